#!/usr/bin/env bash
# install_check.sh BUILD STAGE SOURCE VERSION SOVERSION LIBDIR CC
# Installs BUILD into the staging prefix STAGE and checks what an embedder
# and a user get there. Every failed check is printed; exit 1 if any failed.
set -u
build=$1 stage=$2 src=$3 version=$4 soversion=$5 libdir=$6 cc=$7
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# check DESCRIPTION -- COMMAND...: passes when COMMAND succeeds.
check() {
	local what=$1
	shift 2
	if "$@"; then ok "$what"; else bad "$what"; fi
}

rm -rf -- "$stage"
if ! out=$(cmake --install "$build" --prefix "$stage" 2>&1); then
	echo "$out"
	echo "FAIL: cmake --install $build --prefix $stage"
	exit 1
fi
ok "cmake --install into the staging prefix"
lib=$stage/$libdir
inc=$stage/include/rdmig
doc=$stage/share/doc/rdmig

# The library: real file, soname link, development link, soname inside.
real=$lib/librdmig.so.$version
check "librdmig.so.$version is a regular file" -- test -f "$real" -a ! -L "$real"
check "librdmig.so.$soversion -> librdmig.so.$version" -- \
	test "$(readlink "$lib/librdmig.so.$soversion")" = "librdmig.so.$version"
check "librdmig.so -> librdmig.so.$soversion" -- \
	test "$(readlink "$lib/librdmig.so")" = "librdmig.so.$soversion"
soname=$(readelf -d "$real" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "SONAME is librdmig.so.$soversion (got '$soname')" -- test "$soname" = "librdmig.so.$soversion"
check "librdmig.a defines rdmig_version" -- \
	grep -qx 'rdmig_version' <(nm --defined-only "$lib/librdmig.a" 2>/dev/null | awk '$2 == "T" {print $3}')

# Exports: only rdmig_ functions, all in version node RDMIG_0, exactly the
# names cmake/librdmig.map lists and exactly the functions the installed
# public headers declare.
nm -D --defined-only "$real" >"$stage.nm" 2>&1 || bad "nm -D $real: $(cat "$stage.nm")"
awk '$2 != "A"' "$stage.nm" >"$stage.syms"
echo "nm -D --defined-only: $(wc -l <"$stage.syms") symbols, $(grep -c ' T ' "$stage.syms") functions"
leaks=$(awk '$2 != "T" || $3 !~ /^rdmig_[a-z0-9_]+@@RDMIG_0$/' "$stage.syms")
check "every export is a function rdmig_*@@RDMIG_0${leaks:+; not: $leaks}" -- test -z "$leaks"
sed 's/@@.*//' "$stage.syms" | awk '{print $3}' | sort >"$stage.exported"
sed 's,/\*.*\*/,,' "$src/cmake/librdmig.map" |
	awk '/global:/ {on = 1; next} /local:/ {on = 0} on' |
	tr -d ' \t;' | grep -v '^$' | sort >"$stage.map"
d=$(diff "$stage.map" "$stage.exported")
check "exports equal cmake/librdmig.map${d:+ (< map only, > exported only): $d}" -- test -z "$d"
# gcc -aux-info lists every function declared in the translation unit with
# the header it came from; static inline helpers are not exports.
hdrs=$(cd "$inc" && find . -maxdepth 1 -name '*.h' | sed 's,^\./,,' | sort)
tu=$stage.headers.c
for h in $hdrs; do echo "#include <rdmig/$h>"; done >"$tu"
if "$cc" -std=gnu11 -I"$stage/include" -fsyntax-only -aux-info "$stage.aux" "$tu" 2>"$stage.err"; then
	grep -F "/* $inc/" "$stage.aux" | grep -v ':[0-9]*:[A-Z]* \*/ static ' |
		sed -E 's/.*[ *]([a-z_0-9]+) \(.*/\1/' | sort -u >"$stage.declared"
	d=$(diff "$stage.declared" "$stage.exported")
	check "exports equal the functions include/rdmig/*.h declare${d:+ (< declared only, > exported only): $d}" -- test -z "$d"
else
	bad "the installed headers do not compile together: $(cat "$stage.err")"
fi
und=$(nm -D --undefined-only "$real" | awk '$2 ~ /^rdmig_/')
check "librdmig.so leaves no rdmig_ symbol undefined${und:+: $und}" -- test -z "$und"

# Headers: the source's public headers plus the generated version.h, each
# self-contained under the project's warnings, the umbrella including all.
want=$( (cd "$src/include/rdmig" && find . -maxdepth 1 -name '*.h'; echo ./version.h) | sed 's,^\./,,' | sort)
check "include/rdmig/ holds the public headers (got: ${hdrs//$'\n'/ })" -- \
	test "$hdrs" = "$want"
for h in $hdrs; do
	if e=$(echo "#include <rdmig/$h>" | "$cc" -std=gnu11 -Wall -Wextra -Wstrict-prototypes \
		-Wmissing-prototypes -Wundef -Werror -I"$stage/include" -fsyntax-only -x c - 2>&1); then
		ok "rdmig/$h compiles on its own"
	else
		bad "rdmig/$h does not compile on its own: $e"
	fi
	[ "$h" = rdmig.h ] && continue
	check "rdmig/rdmig.h includes rdmig/$h" -- grep -q "^#include \"rdmig/$h\"" "$inc/rdmig.h"
done
v=$(echo '#include <rdmig/version.h>
RDMIG_VERSION_STRING RDMIG_VERSION_NUMBER' | "$cc" -E -P -I"$stage/include" -x c - 2>&1 | tail -n1)
check "version.h says \"$version\" (got: $v)" -- test "${v%% *}" = "\"$version\""

# pkg-config, as an embedder would call it.
pc() { PKG_CONFIG_PATH=$lib/pkgconfig pkg-config "$@" rdmig 2>&1; }
check "rdmig.pc: --modversion is $version (got: $(pc --modversion))" -- test "$(pc --modversion)" = "$version"
# Requires.private adds the dependencies' own flags after ours.
check "rdmig.pc: --cflags starts with -I$stage/include (got: $(pc --cflags))" -- \
	test "$(pc --cflags | awk '{print $1}')" = "-I$stage/include"
check "rdmig.pc: --libs is -L$lib -lrdmig (got: $(pc --libs))" -- test "$(pc --libs | xargs)" = "-L$lib -lrdmig"
s=$(pc --libs --static)
for l in -libverbs -lrdmacm -lxxhash -lm; do
	check "rdmig.pc: --libs --static has $l" -- grep -qw -- "$l" <<<"$s"
done

# The CMake package.
for f in rdmigConfig.cmake rdmigConfigVersion.cmake rdmigTargets.cmake rdmigStaticTargets.cmake; do
	check "lib/cmake/rdmig/$f" -- test -f "$lib/cmake/rdmig/$f"
done

# The tool, its man page (where man looks), the licence, the scripts.
check "bin/rdmig --version prints 'rdmig $version'" -- \
	test "$("$stage/bin/rdmig" --version 2>&1)" = "rdmig $version"
check "man -M finds rdmig(1) in share/man" -- \
	test "$(man -M "$stage/share/man" -w rdmig 2>&1)" = "$stage/share/man/man1/rdmig.1"
check "share/doc/rdmig/LICENSE is the source's LICENSE" -- cmp -s "$doc/LICENSE" "$src/LICENSE"
check "LICENSE is MIT as the SPDX tags say" -- grep -q '^MIT License' "$doc/LICENSE"
for f in embed.c CMakeLists.txt Makefile README.md; do
	check "share/doc/rdmig/examples/$f" -- cmp -s "$doc/examples/$f" "$src/examples/$f"
done
for f in rxe-host rxe-vm rxe-pair; do
	check "share/rdmig/soft-roce-setup/$f is executable" -- test -x "$stage/share/rdmig/soft-roce-setup/$f"
done
check "share/rdmig/soft-roce-setup/README.md" -- test -f "$stage/share/rdmig/soft-roce-setup/README.md"

rm -f "$stage".*
if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
