# bash completion for snapbundle(1): its commands, each command's options, and the values of
# --progress, --arch and --boot-mode; other arguments complete as file names. The lists are
# those of `snapbundle --help` and `snapbundle COMMAND --help` (tests/lib/surface.py checks it).

_snapbundle()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=
	local commands="version bench bundle bundle-vol inspect store restore unbundle
		verify upload-bundle download-bundle delete-bundle rekey abort migrate-manifest
		migrate-bundle"
	local opts

	[ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}
	if [ "$COMP_CWORD" -eq 1 ]; then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi
	case $prev in
	--progress) COMPREPLY=($(compgen -W "bar json none" -- "$cur")); return ;;
	--arch | -r) COMPREPLY=($(compgen -W "i386 x86_64 arm64" -- "$cur")); return ;;
	--boot-mode) COMPREPLY=($(compgen -W "legacy-bios uefi uefi-preferred" -- "$cur")); return ;;
	-P | --partition)
		if [ "${COMP_WORDS[1]}" = bundle-vol ]; then
			COMPREPLY=($(compgen -W "mbr gpt none" -- "$cur"))
			return
		fi
		;;
	esac
	case ${COMP_WORDS[1]} in
	version) opts="" ;;
	bench) opts="--bound --force --generate-only --jobs --json --level --quick --reference --size
		--svg --threads --uniform --workdir" ;;
	bundle) opts="--json --version -B -c -d -i -k -p -r -u --access-key --acl --arch --batch
		--block-device-mapping --cert --connections --debug --destination --ec2cert
		--endpoint-url --force --freeze --image --keep-unpartitioned --kernel --level
		--no-direct --no-fs-skip --part-size --prefix --privatekey --productcodes
		--profile --progress --ramdisk --region --retry --secret-key --session-token
		--threads --user" ;;
	bundle-vol) opts="-B -P -a -c -d -e -i -k -p -r -s -u -v --access-key --acl --all --arch
		--batch --block-device-mapping --cert --clone-only --connections --debug
		--destination --ec2cert --endpoint-url --exclude --force --fstab
		--generate-fstab --include --inherit --kernel --level --no-direct --no-filter
		--no-inherit --no-size-checks --part-size --partition --prefix --privatekey
		--productcodes --profile --progress --ramdisk --region --retry --scratch-dir
		--secret-key --session-token --size --snapshot --threads --user --volume" ;;
	inspect) opts="-c --cert --version --debug --extents --json --keep-unpartitioned --min-gap --no-fs" ;;
	store) opts="--json --version -o --access-key --arch --block-device-mapping --boot-mode --connections
		--debug --description --endpoint-url --exact --force --frame-size --freeze
		--image-id --keep-unpartitioned --level --name --no-direct --no-fs-skip
		--no-resume --output --owner --part-size --passphrase-file --profile --progress
		--recipient --region --resume --retry --secret-key --session-token --sign-key
		--tag --threads" ;;
	restore) opts="--json --version -k -o --access-key --connections --endpoint-url --force --key --name
		--no-direct --output --partition --passphrase-file --profile --progress --range
		--region --retry --secret-key --session-token --signer --threads --volume" ;;
	rekey) opts="-k -o --access-key --add-passphrase --add-recipient --connections --debug
		--endpoint-url --force --in-place --key --new-data-key --no-direct --output
		--part-size --passphrase-file --profile --progress --region --remove-passphrase
		--remove-recipient --retry --scrypt-log-n --secret-key --session-token --threads" ;;
	unbundle) opts="--json --version -c -d -k -m -o -s --access-key --cert --connections --debug
		--destination --endpoint-url --force --manifest --no-direct --no-verify --output
		--privatekey --profile --progress --region --retry --secret-key --session-token
		--source --threads" ;;
	verify) opts="--json --version -c -k -m -s --access-key --cert --connections --debug --endpoint-url
		--manifest --passphrase-file --privatekey --profile --progress --region --retry
		--secret-key --session-token --signer --source --threads --without-key" ;;
	upload-bundle) opts="--json --version -a -b -d -m -s -t --access-key --acl --batch --bucket --connections
		--debug --directory --endpoint-url --location --manifest --part --profile
		--progress --region --retry --secret-key --session-token --sigv --skipmanifest" ;;
	download-bundle) opts="--json --version -a -b -d -k -m -p -s -t --access-key --bucket --connections
		--debug --directory --endpoint-url --manifest --prefix --privatekey --profile
		--progress --region --retry --secret-key --session-token" ;;
	delete-bundle) opts="--json --version -a -b -m -p -s -t -y --access-key --bucket --clear --connections
		--debug --endpoint-url --manifest --prefix --profile --progress --region --retry
		--secret-key --session-token --yes" ;;
	migrate-manifest) opts="-a -c -k -m -o -s --access-key --batch --cert --debug --ec2cert
		--force --kernel --manifest --mapping-file --no-mapping --output --privatekey
		--ramdisk --region --secret-key" ;;
	migrate-bundle) opts="-a -b -c -d -k -m -s -t --access-key --acl --batch --bucket --cert
		--connections --debug --destination-bucket --ec2cert --kernel --location
		--manifest --mapping-file --no-mapping --privatekey --profile --progress
		--ramdisk --region --retry --secret-key --session-token --url" ;;
	abort) opts="--json --version --access-key --connections --debug --endpoint-url --profile --region
		--retry --secret-key --session-token" ;;
	*) opts= ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}

complete -o filenames -F _snapbundle snapbundle
