#!/usr/bin/env bash
# SSH engine for the tests: OpenSSH client and server binaries, and the test user `fbtest`.
# Idempotent. It starts nothing: tests/ssh_fixtures.py generates host and client keys,
# authorizes the client key and runs its own `sshd -D` on a free loopback port.
set -euo pipefail
USERNAME=${FLOWBATCH_SSH_USER:-fbtest}
export DEBIAN_FRONTEND=noninteractive

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
  # Only refresh the package lists when they are missing or older than a day.
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] \
    || apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
fi

id "$USERNAME" >/dev/null 2>&1 || useradd -m -s /bin/bash "$USERNAME"
HOME_DIR=$(getent passwd "$USERNAME" | cut -d: -f6)
[ -d "$HOME_DIR" ] || install -d -m 755 -o "$USERNAME" -g "$USERNAME" "$HOME_DIR"
# useradd leaves the account locked ('!'); with `UsePAM no` sshd refuses locked accounts
# even for public keys. '*' means "no password" without locking.
usermod -p '*' "$USERNAME"
install -d -m 700 -o "$USERNAME" -g "$USERNAME" "$HOME_DIR/.ssh"

# The privilege-separation directory, which systemd would normally create.
mkdir -p /run/sshd
chmod 755 /run/sshd
echo "ssh engine ready: user $USERNAME, $(/usr/sbin/sshd -V 2>&1 | head -1)"
