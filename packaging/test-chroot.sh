#!/usr/bin/env bash
# The full check, by hand: install, upgrade, remove and purge the amd64 package inside a real
# Debian bookworm chroot made with debootstrap (maintainer scripts run inside it, with its own
# useradd and dpkg-statoverride). CI runs the quicker packaging/test-install.sh instead; this
# one downloads a minimal bookworm (~1.5 min, cached in target/bookworm-root).
#
#   packaging/test-chroot.sh FIRST_amd64.deb SECOND_amd64.deb
set -euo pipefail
root=target/bookworm-root
if [ ! -x "$root/usr/bin/dpkg" ]; then
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
fi
cp "$1" "$root/tmp/first.deb"
cp "$2" "$root/tmp/second.deb"
chroot "$root" sh -euxc '
    dpkg -i /tmp/first.deb
    id kioskpay
    stat -c "%a %U:%G %n" /etc/kioskpay /etc/kioskpay/kioskpay.toml /var/lib/kioskpay
    test "$(stat -c %a:%U:%G /etc/kioskpay/kioskpay.toml)" = 640:root:kioskpay
    for g in gpio spi dialout video; do id -nG kioskpay | grep -qw "$g"; done
    kioskpay --version
    echo "# local edit" >>/etc/kioskpay/kioskpay.toml
    dpkg -i /tmp/second.deb
    grep -q "# local edit" /etc/kioskpay/kioskpay.toml
    dpkg -r kioskpay
    test -f /etc/kioskpay/kioskpay.toml
    dpkg -P kioskpay
    test ! -e /etc/kioskpay && test ! -e /var/lib/kioskpay
    test -z "$(dpkg-statoverride --list)"
'
echo "chroot install/upgrade/remove/purge: all checks passed"
