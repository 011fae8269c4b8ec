#!/usr/bin/env bash
# example_check.sh STAGE LIBDIR WORK CC [SANITIZER-FLAGS]
# Builds the example installed under STAGE (share/doc/rdmig/examples) out of
# tree in WORK, four ways: pkg-config and find_package(rdmig), each against
# librdmig.so and librdmig.a; runs each build (loopback tcp). A build of a
# sanitized rdmig passes the same sanitizer flags to the example.
set -u
stage=$1 libdir=$2 work=$3 cc=$4 san=${5:-}
ex=$stage/share/doc/rdmig/examples
lib=$stage/$libdir
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
export PKG_CONFIG_PATH=$lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

# run_embed WHAT BINARY shared|static: runs it, checks its line and which
# librdmig it loaded.
run_embed() {
	local what=$1 bin=$2 kind=$3 out needed
	needed=$(readelf -d "$bin" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(librdmig[^]]*\)\]/\1/p')
	if [ "$kind" = shared ]; then
		if [ "$needed" = librdmig.so.0 ]; then ok "$what: NEEDED librdmig.so.0"; else
			bad "$what: NEEDED librdmig is '$needed', expected librdmig.so.0"; fi
		# Loaded from the staging prefix, not some other install.
		loaded=$(ldd "$bin" | awk '$1 ~ /^librdmig/ {print $3}')
		if [ "$loaded" -ef "$lib/librdmig.so.0" ]; then ok "$what: loads $loaded"; else
			bad "$what: loads librdmig from '$loaded', not $lib"; fi
	elif [ -z "$needed" ]; then
		ok "$what: no librdmig.so needed"
	else
		bad "$what: linked statically yet needs $needed"
	fi
	if out=$(env -u RDMIG_KEY_FILE "$bin" 2>&1) &&
		grep -q '^embed: librdmig .*(unauthenticated).* identical$' <<<"$out"; then
		ok "$what runs: $out"
	else
		bad "$what fails: $out"
	fi
	# The public key API (rdmig/auth.h): both ends prove the key first.
	if out=$(RDMIG_KEY_FILE=$key "$bin" 2>&1) &&
		grep -q '^embed: librdmig .*(key-authenticated).* identical$' <<<"$out"; then
		ok "$what runs with a key: $out"
	else
		bad "$what fails with a key: $out"
	fi
}

rm -rf -- "$work"
mkdir -p "$work/make"
key=$work/key
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key")

# pkg-config, through the example's Makefile.
for target in embed embed-static; do
	if out=$(make -s -C "$work/make" -f "$ex/Makefile" CC="$cc" \
		CFLAGS="-O2 -g -Wall -Wextra -Werror $san" \
		LDFLAGS="-Wl,-rpath,$lib $san" "$target" 2>&1); then
		ok "pkg-config build of $target"
		[ "$target" = embed ] && kind=shared || kind=static
		run_embed "pkg-config $target" "$work/make/$target" "$kind"
	else
		bad "pkg-config build of $target: $out"
	fi
done

# CMake: find_package(rdmig) from the staging prefix.
for kind in shared static; do
	b=$work/cmake-$kind
	[ "$kind" = static ] && st=ON || st=OFF
	if out=$(cmake -S "$ex" -B "$b" -DCMAKE_PREFIX_PATH="$stage" -DRDMIG_EMBED_STATIC="$st" \
		-DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="-Wall -Wextra -Werror $san" \
		-DCMAKE_EXE_LINKER_FLAGS="$san" 2>&1) &&
		out=$out$'\n'$(cmake --build "$b" 2>&1); then
		ok "CMake build ($kind)"
		want="rdmig [0-9.]* from $lib/cmake/rdmig"
		if grep -q -- "$want" <<<"$out"; then ok "CMake $kind: found the staged package"; else
			bad "CMake $kind: package not found in $lib/cmake/rdmig: $(grep 'rdmig ' <<<"$out")"; fi
		run_embed "CMake embed ($kind)" "$b/embed" "$kind"
	else
		bad "CMake build ($kind): $out"
	fi
done

# The static component without the libraries it needs (pkg-config made to
# see none) must say which ones, not fail later at link time.
mkdir -p "$work/no-pc"
if out=$(PKG_CONFIG_LIBDIR=$work/no-pc PKG_CONFIG_PATH='' cmake -S "$ex" -B "$work/cmake-nodeps" \
	-DCMAKE_PREFIX_PATH="$stage" -DRDMIG_EMBED_STATIC=ON -DCMAKE_C_COMPILER="$cc" 2>&1); then
	bad "find_package(rdmig COMPONENTS static) succeeded without its pkg-config modules"
elif tr -s '\n ' ' ' <<<"$out" | grep -q 'not found: .*libibverbs'; then
	ok "find_package(rdmig COMPONENTS static) names the missing modules"
else
	bad "find_package(rdmig COMPONENTS static) failed without naming libibverbs: $out"
fi

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
