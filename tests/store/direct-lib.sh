# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared by tests/store/direct*.sh: a disk whose frames start and end at volume offsets that
# are multiples of 512 but not of 4096 (an MBR with partitions at odd sectors), with stored
# (incompressible) and deflated frames, and a check of which way the bytes were written.

# make_odd_disk FILE: 40 MiB; partition 1 at sector 63 (random, text, zeros, random up to its
# odd end), partition 2 at sector 20551 filled to its odd end.
make_odd_disk() {
	local f=$1
	command -v sfdisk >/dev/null || exit 77
	rm -f "$f"
	truncate -s 40M "$f"
	printf 'label: dos\nstart=63, size=20000\nstart=20551, size=30000\n' | sfdisk -q "$f" >/dev/null
	head -c 3000000 /dev/urandom | dd of="$f" bs=512 seek=63 conv=notrunc status=none
	seq 1 400000 | dd of="$f" bs=512 seek=$((63 + 6000)) conv=notrunc status=none
	head -c 300000 /dev/urandom | dd of="$f" bs=512 seek=$((63 + 20000 - 586)) conv=notrunc \
		status=none
	head -c $((30000 * 512)) /dev/urandom | dd of="$f" bs=512 seek=20551 conv=notrunc \
		status=none
}

# frames_unaligned IMAGE.bin: the image has stored (raw) frames and frames that start or end
# off a 4096 boundary, or the disk above did not do its job
frames_unaligned() {
	"$B" inspect "$1" --frames > frames.txt
	awk '/^frame [0-9]/ { if (($8 % 4096) || (($8 + $10) % 4096)) odd++; if ($13 == "raw") raw++ }
		END { exit !(odd >= 3 && raw >= 3) }' frames.txt ||
		fail "the test disk has no unaligned or no stored frames"
}

# cached FILE: bytes of FILE in the page cache (fincore, util-linux)
cached() {
	fincore -b -n -o RES "$1" | tr -d ' '
}

# direct_expected DIR: whether writes to DIR must bypass the page cache (a disk filesystem
# that does O_DIRECT; tmpfs keeps everything in memory whichever way it is written)
direct_expected() {
	command -v fincore >/dev/null || return 1
	case "$(stat -f -c %T "$1")" in
	ext2/ext3 | xfs) return 0 ;;
	*) return 1 ;;
	esac
}
