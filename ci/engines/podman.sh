#!/usr/bin/env bash
# Podman for flowbatch's container tests: installs podman and runc, configures plain
# `podman` (as root, offline) through /etc/containers/, imports a busybox-static image
# as localhost/flowbatch-busybox:test and smoke-tests it. Idempotent; leaves nothing
# running. Findings behind each setting: /work/shared/engines/containers_offline.sh.
set -euo pipefail
IMAGE=localhost/flowbatch-busybox:test
# Commands the tests (and users' smoke pipelines) run inside the image, as busybox links.
APPLETS=(sh echo cat sleep ls wc true false env id head tail tr seq yes dd
         hostname uname grep test mkdir rm touch printf kill ps pwd expr cut sort)

export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in podman runc crun catatonit busybox-static uidmap; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ] \
    || apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p /etc/containers
# Own graph root: a storage dir already initialised with another driver (Debian's
# default is overlay) makes podman refuse vfs ("database graph driver mismatch").
cat >/etc/containers/storage.conf <<'CONF'
[storage]
driver = "vfs"
runroot = "/run/containers/flowbatch-vfs"
graphroot = "/var/lib/containers/flowbatch-vfs"
CONF

# Root podman asks for RLIMIT_NOFILE=1048576 and RLIMIT_NPROC=max, which this sandbox
# refuses (setrlimit: Operation not permitted); pin values under the hard limits. Any
# --ulimit flag on a command line replaces the whole list.
NOFILE=$(( $(ulimit -Hn) < 16384 ? $(ulimit -Hn) : 16384 ))
NPROC=32768
# runc, not crun: crun 1.8.1 refuses hybrid cgroup v1+v2 layouts even with
# --cgroups=disabled; runc honours --cpus/--memory through cgroup v1. cgroupfs: no
# systemd here. events_logger file: journald is not running. catatonit is the
# --init that flowbatch passes so that SIGTERM reaches jobs (a bare PID 1 ignores it).
cat >/etc/containers/containers.conf <<CONF
[containers]
init_path = "/usr/bin/catatonit"
netns = "none"
log_driver = "k8s-file"
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"

[network]
network_backend = "cni"
CONF

P=(podman --log-level=error)
if ! "${P[@]}" image exists "$IMAGE"; then
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  ROOTFS=$WORK/rootfs
  mkdir -p "$ROOTFS"/{bin,tmp,proc,sys,dev,etc,root}
  chmod 1777 "$ROOTFS/tmp"
  # busybox-static's binary, not /bin/busybox, which may be the dynamic build.
  BUSYBOX=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')
  cp "$BUSYBOX" "$ROOTFS/bin/busybox"
  for a in "${APPLETS[@]}"; do ln -sf busybox "$ROOTFS/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$ROOTFS/etc/passwd"
  echo 'root:x:0:' >"$ROOTFS/etc/group"
  tar -C "$ROOTFS" -cf "$WORK/rootfs.tar" .
  "${P[@]}" import -q --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
    "$WORK/rootfs.tar" "$IMAGE" >/dev/null
fi

"${P[@]}" run --rm --pull=never --network=none --init "$IMAGE" true

# The SSH test user runs containers too (jobs with `image` on an ssh compute environment):
# rootless podman keeps its own image store, so load the image there as well. On this
# kernel's cgroup v1, rootless podman ignores --cpus/--memory (it says so).
if id fbtest >/dev/null 2>&1; then
  grep -q '^fbtest:' /etc/subuid || usermod --add-subuids 100000-165535 fbtest
  grep -q '^fbtest:' /etc/subgid || usermod --add-subgids 100000-165535 fbtest
  as_fbtest() { runuser -u fbtest -- env XDG_RUNTIME_DIR=/tmp/podman-run-fbtest "$@"; }
  install -d -m 700 -o fbtest -g fbtest /tmp/podman-run-fbtest
  if ! as_fbtest podman --log-level=error image exists "$IMAGE"; then
    TAR=$(mktemp /tmp/flowbatch-image.XXXXXX.tar)
    rm -f "$TAR"  # podman save refuses to overwrite an archive
    "${P[@]}" save -q -o "$TAR" "$IMAGE"
    chmod 644 "$TAR"
    (cd / && as_fbtest podman --log-level=error load -q -i "$TAR" >/dev/null)
    rm -f "$TAR"
  fi
  (cd / && as_fbtest podman --log-level=error run --rm --pull=never --network=none --init \
    "$IMAGE" true)
  echo "rootless podman ready for fbtest"
fi
echo "podman ready: $("${P[@]}" --version), image $IMAGE"
