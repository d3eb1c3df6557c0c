#!/bin/sh
# TEST FIXTURE builder for molecule/nvidia: a local apt repository laid out like NVIDIA's
# libnvidia-container repository (BASE/stable/deb/$(ARCH)/ flat, BASE/gpgkey), holding
# stand-in packages with NVIDIA's package names. None of them contain NVIDIA software:
#   nvidia-container-toolkit-base  /usr/bin/nvidia-ctk (fixture: cdi generate writes a stub
#                                  spec; runtime configure refuses, the role must not call it)
#                                  /usr/bin/nvidia-container-runtime (fixture: execs runc)
#   nvidia-container-toolkit       /usr/bin/nvidia-container-runtime-hook (fixture: no-op;
#                                  its presence makes dockerd accept --gpus requests)
#   libnvidia-container-tools, libnvidia-container1 (empty)
# Each exists at two versions so a test can show the pin wins over the newest. The Release
# file is signed (InRelease, Release.gpg) with a key generated here for the test only;
# BASE/gpgkey.fingerprint holds its fingerprint, BASE/gpgkey-two-keys it plus another key.
#   build-fixture-repo.sh BASE_DIR
set -eu
base=$1
versions="1.17.8-1 1.18.0-1"
arch=$(dpkg --print-architecture)
repo=$base/stable/deb/$arch
work=$(mktemp -d)
export GNUPGHOME="$work/gnupg"
mkdir -p "$repo" "$GNUPGHOME"
chmod 700 "$GNUPGHOME"

fixture_script() { # PATH BODY
  mkdir -p "$(dirname "$1")"
  printf '#!/bin/sh\n# TEST FIXTURE from molecule/nvidia, not NVIDIA software.\n%s\n' "$2" > "$1"
  chmod 755 "$1"
}

build() { # NAME VERSION DEPENDS
  root=$work/$1_$2
  mkdir -p "$root/DEBIAN" "$root/usr/share/doc/$1"
  echo "Test fixture package standing in for $1; contains no NVIDIA software." \
    > "$root/usr/share/doc/$1/FIXTURE"
  case $1 in
    nvidia-container-toolkit-base)
      fixture_script "$root/usr/bin/nvidia-container-runtime" 'exec runc "$@"'
      fixture_script "$root/usr/bin/nvidia-ctk" "$(cat <<'CTK'
case "$1 $2" in
  "cdi generate")
    out=/var/run/cdi/nvidia.yaml
    for arg in "$@"; do case $arg in --output=*) out=${arg#--output=} ;; esac; done
    mkdir -p "$(dirname "$out")"
    printf '%s\n' '# TEST FIXTURE CDI spec (molecule/nvidia)' 'cdiVersion: 0.5.0' \
      'kind: nvidia.com/gpu' 'devices: []' 'containerEdits: {}' > "$out" ;;
  "runtime configure")
    echo "nvidia-ctk fixture: runtime configure rewrites daemon.json; the role must not call it" >&2
    exit 3 ;;
  *) echo "NVIDIA Container Toolkit CLI version (test fixture)" ;;
esac
CTK
)"
      ;;
    nvidia-container-toolkit)
      fixture_script "$root/usr/bin/nvidia-container-runtime-hook" 'cat >/dev/null; exit 0'
      ;;
  esac
  cat > "$root/DEBIAN/control" <<CONTROL
Package: $1
Version: $2
Architecture: $arch
Maintainer: tfserving-fleet test fixtures <fixtures@example.invalid>
Depends: $3
Description: test fixture standing in for $1
 Built by molecule/nvidia; contains no NVIDIA software.
CONTROL
  sed -i '/^Depends: $/d' "$root/DEBIAN/control"
  dpkg-deb --root-owner-group --build "$root" "$repo/${1}_${2}_$arch.deb" >/dev/null
}

for v in $versions; do
  build libnvidia-container1 "$v" ""
  build libnvidia-container-tools "$v" "libnvidia-container1 (= $v)"
  build nvidia-container-toolkit-base "$v" ""
  build nvidia-container-toolkit "$v" \
    "nvidia-container-toolkit-base (= $v), libnvidia-container-tools (= $v)"
done

gpg --batch --passphrase '' --quick-gen-key \
  'tfserving-fleet test fixture repository key <fixtures@example.invalid>' ed25519 sign never
gpg --batch --armor --export > "$base/gpgkey"
# The repository key's fingerprint (the role pins it), and a key file that carries a second
# key besides it (the role must refuse it).
gpg --batch --with-colons --list-keys | awk -F: '$1 == "fpr" { print $10; exit }' \
  > "$base/gpgkey.fingerprint"
gpg --batch --passphrase '' --quick-gen-key \
  'tfserving-fleet test fixture other key <other@example.invalid>' ed25519 sign never
gpg --batch --armor --export > "$base/gpgkey-two-keys"

cd "$repo"
apt-ftparchive packages . > Packages
gzip -9kf Packages
apt-ftparchive -o APT::FTPArchive::Release::Origin=fixture \
  -o APT::FTPArchive::Release::Label=nvidia-container-toolkit-fixture release . > "$work/Release"
mv "$work/Release" Release
key=$(cat "$base/gpgkey.fingerprint")
gpg --batch --yes --local-user "$key" --clearsign -o InRelease Release
gpg --batch --yes --local-user "$key" --armor --detach-sign -o Release.gpg Release
chmod -R a+rX "$base"
rm -rf "$work"
