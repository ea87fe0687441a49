#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The parallel CBC path against the reference pipeline at boundary sizes: parts of one AES block
# and one either side (blocks straddling every part boundary), and parts of the parallel
# threshold (1 MiB) and one byte either side, each with one thread and with several.
. "$(dirname "$0")/lib.sh"

big="$T/big.img"
head -c 3500000 /dev/urandom >"$big"
for ps in 1048575 1048576 1048577; do
	m=$(mkbundle "$big" "$T/b$ps" --part-size "$ps")
	for th in 1 3; do
		unbundle_ok "parts-$ps-threads-$th" "$m" "$big" --threads "$th"
	done
	"$SNAPBUNDLE" verify -m "$m" -k "$T/user.key" >/dev/null 2>&1 || fail "verify $ps"
	rm -rf "$T/b$ps"
done
tiny="$T/tiny.img"
head -c 3000 /dev/urandom >"$tiny"
for ps in 15 16 17 4097; do
	m=$(mkbundle "$tiny" "$T/t$ps" --part-size "$ps")
	unbundle_ok "parts-$ps" "$m" "$tiny" --threads 2
	rm -rf "$T/t$ps"
done
finish
