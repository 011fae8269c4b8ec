#!/usr/bin/env bash
# man_check.sh RDMIG MANPAGE
# The man page and the tool must not drift apart: every command and
# subcommand `RDMIG --help` lists has a section "rdmig COMMAND"; every option
# a command's --help lists appears in its section, and every option the
# section describes is one --help lists (-h/--help, which every command takes,
# are described once under OPTIONS); every RDMIG_* variable a help mentions
# is under ENVIRONMENT; .TH carries the tool's version. `man -l` must render
# the page without a single groff warning.
set -u
R=$1 page=$2
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

warn=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=w -l "$page" 2>&1 >/dev/null)
rc=$?
if [ "$rc" -eq 0 ] && [ -z "$warn" ]; then ok "man -l renders $page without warnings"; else
	bad "man -l $page: exit $rc: $warn"; fi

# Rendered wide enough that no paragraph wraps, groff's Unicode hyphen and
# minus as ASCII.
text=$(LC_ALL=C.UTF-8 MANWIDTH=1000 man -l "$page" 2>/dev/null |
	sed 's/\xe2\x80\x90/-/g; s/\xe2\x88\x92/-/g')

# section HEADING: the lines under a rendered .SH (column 0) or .SS (column 3)
# heading, up to the next heading.
section() {
	awk -v h="$1" 'on && NF && match($0, /[^ ]/) && RSTART <= 4 {exit} on {print} $0 == h {on = 1}' <<<"$text"
}
# Option names (--long, -x) in the text on stdin.
options() {
	grep -oE '(^|[][ ,|(`])--?[A-Za-z][A-Za-z0-9-]*' | sed -E 's/^[][ ,|(`]//' |
		grep -E '^(--[A-Za-z]|-[A-Za-z]$)' | sort -u
}
has() { # has TEXT OPTION
	grep -qE -- "(^|[^A-Za-z0-9-])$2([^A-Za-z0-9-]|\$)" <<<"$1"
}

v=$("$R" --version)
th=$(grep -m1 '^\.TH ' "$page")
case "$th" in *"\"$v\""*) ok ".TH names $v" ;; *) bad ".TH '$th' does not name '$v'" ;; esac

top=$("$R" --help)
sec=$(section OPTIONS)
for o in $(options <<<"$top"); do
	if has "$sec" "$o"; then ok "OPTIONS: $o"; else bad "OPTIONS lacks $o, which rdmig --help lists"; fi
done
helps=$top

# Commands from "Commands:"; a command whose usage line reads
# "rdmig CMD a|b|c" has subcommands a, b and c.
paths=()
for c in $("$R" --help | awk '/^Commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}'); do
	paths+=("$c")
	subs=$("$R" "$c" --help | sed -nE "1s/^Usage: rdmig $c ([a-z]+(\|[a-z]+)+).*/\1/p" | tr '|' ' ')
	for s in $subs; do paths+=("$c $s"); done
done
[ "${#paths[@]}" -ge 6 ] || bad "found only ${#paths[@]} commands in rdmig --help: ${paths[*]}"

for p in "${paths[@]}"; do
	# shellcheck disable=SC2086 # a path is words
	if ! help=$("$R" $p --help 2>&1); then
		bad "rdmig $p --help failed: $help"
		continue
	fi
	helps+=$'\n'$help
	sec=$(section "   rdmig $p")
	if [ -z "$sec" ]; then
		bad "no section 'rdmig $p' (.SS) for a command rdmig --help lists"
		continue
	fi
	want=$(options <<<"$help" | grep -vxE -- '-h|--help')
	for o in $want; do
		has "$sec" "$o" || bad "section 'rdmig $p' lacks $o, which rdmig $p --help lists"
	done
	# Option tags: the lines .TP indents by 7 that start with a dash.
	for o in $(grep -E '^       -' <<<"$sec" | options | grep -vxE -- '-h|--help'); do
		grep -qx -- "$o" <<<"$want" ||
			bad "section 'rdmig $p' describes $o, which rdmig $p --help does not list"
	done
	ok "rdmig $p: $(wc -w <<<"$want") options checked"
done

while read -r h; do
	[ -z "$h" ] && continue
	found=0
	for p in "${paths[@]}"; do [ "$h" = "$p" ] && found=1; done
	[ "$found" -eq 1 ] || bad "the man page documents 'rdmig $h', which rdmig --help does not list"
done <<<"$(awk '/^COMMANDS$/ {on = 1; next} on && /^[^ ]/ {exit} on && /^   rdmig / {sub(/^   rdmig /, ""); print}' <<<"$text")"

sec=$(section ENVIRONMENT)
for e in $(grep -oE 'RDMIG_[A-Z_]+' <<<"$helps" | sort -u); do
	if grep -qx "       $e" <<<"$sec"; then ok "ENVIRONMENT: $e"; else
		bad "ENVIRONMENT lacks $e, which a --help mentions"; fi
done

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
