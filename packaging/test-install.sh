#!/usr/bin/env bash
# Installs, upgrades, removes and purges the kioskpay package on a scratch Debian root with
# `dpkg --root`, running the maintainer scripts outside a chroot (--force-script-chrootless,
# DPKG_ROOT set), and checks what each step leaves behind. No container engine, no network.
#
#   packaging/test-install.sh FIRST.deb SECOND.deb
#
# SECOND must be a later version of the same architecture. The scratch root starts with only
# root, dialout and video (no gpio, no spi: a non-Pi system), so postinst must create those.
set -euo pipefail

first=$(realpath "$1")
second=$(realpath "$2")
arch=$(dpkg-deb --field "$first" Architecture)
work=$(mktemp -d "${TMPDIR:-/tmp}/kioskpay-dpkg-root.XXXXXX")
root="$work/root"
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { local what=$1; shift; "$@" || fail "$what"; echo "ok: $what"; }

mkdir -p "$root"/var/lib/dpkg/{info,updates,triggers,alternatives} "$root"/etc "$root"/usr/sbin
touch "$root"/var/lib/dpkg/{status,available}
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
printf 'root:x:0:\ndialout:x:20:\nvideo:x:44:\n' >"$root/etc/group"
printf 'root:*::\ndialout:*::\nvideo:*::\n' >"$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
native=$(dpkg --print-architecture)
[ "$arch" = "$native" ] || [ "$arch" = all ] || dpkg --root="$root" --add-architecture "$arch"

dpkg_root() {
    # passwd and libc are not in the scratch root's database; the host provides the tools.
    dpkg --root="$root" --force-script-chrootless --force-depends --force-confdef --force-confold "$@"
}
mode_of() { stat -c '%a %u %g' "$root$1"; }
uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$root/etc/passwd"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$root/etc/group"; }
members_of() { awk -F: -v n="$1" '$1 == n { print $4 }' "$root/etc/group"; }
status_of() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${db:Status-Status} ${Version}' kioskpay 2>/dev/null || true; }

echo "== install $(dpkg-deb --field "$first" Version) ($arch)"
dpkg_root --install "$first"
v1=$(dpkg-deb --field "$first" Version)
check "installed" test "$(status_of)" = "installed $v1"
check "binary" test -x "$root/usr/bin/kioskpay"
check "unit" test -f "$root/lib/systemd/system/kioskpay.service"
check "udev rules" test -f "$root/lib/udev/rules.d/99-kioskpay-scanner.rules"
check "kioskpay is a system user" test -n "$(uid_of kioskpay)" -a "$(uid_of kioskpay)" -lt 1000
for group in gpio spi dialout video; do
    check "group $group exists" test -n "$(gid_of "$group")"
    check "kioskpay in $group" grep -qw kioskpay <<<"$(members_of "$group")"
done
check "config 0640 root:kioskpay" test "$(mode_of /etc/kioskpay/kioskpay.toml)" = "640 0 $(gid_of kioskpay)"
check "config dir 0750 root:kioskpay" test "$(mode_of /etc/kioskpay)" = "750 0 $(gid_of kioskpay)"
check "state dir 0750 kioskpay:kioskpay" test "$(mode_of /var/lib/kioskpay)" = "750 $(uid_of kioskpay) $(gid_of kioskpay)"
check "config is a conffile" grep -q '/etc/kioskpay/kioskpay.toml' \
    <(dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Conffiles}' kioskpay)
check "service enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/kioskpay.service"

echo "== upgrade to $(dpkg-deb --field "$second" Version), with a local edit to the config"
echo '# edited by the installer' >>"$root/etc/kioskpay/kioskpay.toml"
echo 'journal' >"$root/var/lib/kioskpay/journal.log"
dpkg_root --install "$second"
v2=$(dpkg-deb --field "$second" Version)
check "upgraded" test "$(status_of)" = "installed $v2"
check "local config edit kept" grep -q 'edited by the installer' "$root/etc/kioskpay/kioskpay.toml"
check "config still 0640 root:kioskpay" test "$(mode_of /etc/kioskpay/kioskpay.toml)" = "640 0 $(gid_of kioskpay)"
check "journal kept" test -f "$root/var/lib/kioskpay/journal.log"
check "one kioskpay user" test "$(grep -c '^kioskpay:' "$root/etc/passwd")" = 1

echo "== remove"
dpkg_root --remove kioskpay
check "config-files state" test "$(status_of)" = "config-files $v2"
check "binary gone" test ! -e "$root/usr/bin/kioskpay"
check "unit gone" test ! -e "$root/lib/systemd/system/kioskpay.service"
check "config kept on remove" test -f "$root/etc/kioskpay/kioskpay.toml"

echo "== purge"
dpkg_root --purge kioskpay
check "not installed" test -z "$(status_of | grep -v '^not-installed' || true)"
check "config gone" test ! -e "$root/etc/kioskpay"
check "state gone" test ! -e "$root/var/lib/kioskpay"
check "enablement gone" test ! -e "$root/etc/systemd/system/multi-user.target.wants/kioskpay.service"
check "statoverrides gone" test -z "$(dpkg-statoverride --root "$root" --list)"
echo "package install/upgrade/remove/purge: all checks passed"
