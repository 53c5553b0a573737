#!/usr/bin/env bash
# The deploy test (issue #24): the dist tarball works on a bare node, without root and without network, and gives
# the same bytes as the build tree's binary.
#
#   bash tests/deploy/minroot.sh dist/tabula-VERSION-linux-x86_64.tar.gz build/tabula [CUDA_TARBALL]
#
# 1. A minimal Debian root (debootstrap --variant=minbase: no -dev packages, no Python, no compiler), made once and
#    cached under $TABULA_MINROOT_CACHE (default /var/cache/tabula-deploy; making it needs the network, reruns
#    don't). TABULA_MINROOT_SUITE/_MIRROR pick another release: Ubuntu 22.04 (glibc 2.35, the stated floor) is
#    TABULA_MINROOT_SUITE=jammy TABULA_MINROOT_MIRROR=http://archive.ubuntu.com/ubuntu, with
#    TABULA_MINROOT_DEBOOTSTRAP_ARGS=--no-check-gpg on a Debian host without Ubuntu's archive keyring.
# 2. The tarball unpacked there; every run as user nobody (uid 65534) in a fresh network namespace (loopback only)
#    with its own /proc: `tabula doctor`, `tabula demo --quick`, `tabula synth` + `embed` + `eval map`, and an
#    embed of a HEST .h5 into an .h5ad.
# 3. The same commands with the build tree's binary on this machine, in the same absolute folder, and every
#    output file compared byte for byte.
# 4. With a CUDA tarball: in the same root (no CUDA libraries) the binary starts, `tabula doctor` says why CUDA is
#    unavailable (the missing library by name), `--device cuda` fails with a message naming the missing library
#    and the versions needed (an error exit, not a crash), and `--device cpu` gives the build tree's bytes.
# Every binary and the CUDA module use no glibc symbol newer than the floor in .ci/glibc_floor (README).
# Needs root (chroot, namespaces) and takes minutes: it is `make test-deploy`, not part of `make test`.
set -euo pipefail
tarball=$(readlink -f "${1:?usage: minroot.sh TARBALL REFERENCE_BINARY [CUDA_TARBALL]}")
reference=$(readlink -f "${2:?usage: minroot.sh TARBALL REFERENCE_BINARY [CUDA_TARBALL]}")
cuda_tarball=${3:+$(readlink -f "$3")}
cache=${TABULA_MINROOT_CACHE:-/var/cache/tabula-deploy}
suite=${TABULA_MINROOT_SUITE:-bookworm}
mirror=${TABULA_MINROOT_MIRROR:-http://deb.debian.org/debian}
root=$cache/$suite-minbase
check=/tmp/tabula-deploy-check  # the same absolute path inside the root and on this machine (run.json has paths)
uid=65534

fail() { echo "minroot: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (chroot + network namespace); run it as root or in CI's root job"
for tool in unshare chroot setpriv tar cmp; do command -v $tool >/dev/null || fail "needs $tool"; done

if [ ! -x "$root/bin/sh" ]; then
  command -v debootstrap >/dev/null || fail "needs debootstrap to make the root once: apt-get install debootstrap"
  echo "minroot: making $root (debootstrap --variant=minbase $suite; needs the network once)"
  rm -rf "$root.tmp"
  mkdir -p "$cache"
  # shellcheck disable=SC2086  # TABULA_MINROOT_DEBOOTSTRAP_ARGS is a list of flags
  debootstrap --variant=minbase ${TABULA_MINROOT_DEBOOTSTRAP_ARGS:-} "$suite" "$root.tmp" "$mirror" \
    >"$cache/debootstrap.log" 2>&1 ||
    fail "debootstrap failed, see $cache/debootstrap.log"
  mv "$root.tmp" "$root"
fi
# The root is what a bare node has: no headers, no Python, no compiler, no CUDA.
unwanted='-dev$|^python3?(\.[0-9]+)?$|^(gcc|g\+\+|cpp)(-[0-9]+)?$|^libcuda|^libcudnn'
chroot "$root" dpkg-query -W -f '${Package}\n' | grep -E -- "$unwanted" &&
  fail "$root has development packages, Python or CUDA installed"
[ -e "$root/usr/bin/python3" ] && fail "$root has Python"

# Runs "$@" (a shell command line) inside the root as nobody, without network, in $check.
in_root() {
  unshare --net --mount --pid --fork --mount-proc="$root/proc" \
    chroot "$root" setpriv --reuid=$uid --regid=$uid --clear-groups \
    env -i HOME=$check PATH=/opt/tabula/bin:/usr/bin:/bin LANG=C.UTF-8 sh -c "cd $check && $*"
}
# The same on this machine with the reference binary (as root: only the bytes are compared).
on_host() { (cd $check && env PATH="$(dirname "$reference"):$PATH" sh -c "$*"); }

unpack() {  # tarball -> $root/opt/tabula (bin/ lib/ README.txt licenses/)
  rm -rf "$root/opt/tabula" "$root/opt/unpack"
  mkdir -p "$root/opt/unpack"
  tar -xzf "$1" -C "$root/opt/unpack"
  mv "$root/opt/unpack"/tabula-* "$root/opt/tabula"
  rmdir "$root/opt/unpack"
}
fresh_check_dir() {  # $1: where (the root's copy or this machine's)
  rm -rf "$1"
  mkdir -p "$1"
  chown $uid:$uid "$1"
}

# The newest GLIBC_ symbol version the files use must not be above the floor README states (.ci/glibc_floor).
floor=$(cat "$(dirname "$0")/../../.ci/glibc_floor")
check_glibc_floor() {
  local f v
  for f in "$@"; do
    v=$(objdump -T "$f" | grep -oE 'GLIBC_[0-9]+\.[0-9]+' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -u | tail -1)
    [ "$(printf '%s\n%s\n' "$v" "$floor" | sort -t. -k1,1n -k2,2n | tail -1)" = "$floor" ] ||
      fail "$f uses glibc $v symbols, above the stated floor $floor"
    echo "minroot: $(basename "$f"): newest glibc symbol version $v (floor $floor)"
  done
}

unpack "$tarball"
check_glibc_floor "$root/opt/tabula/bin/tabula"
fresh_check_dir "$root$check"
echo "minroot: network inside: $(in_root 'cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " | tr "\n" " "')"
[ "$(in_root 'id -u')" = $uid ] || fail "not running as uid $uid"
in_root 'touch /opt/tabula/bin/x 2>/dev/null' && fail "nobody can write the unpacked tree"

# The commands both binaries run. --threads 2: outputs do not depend on it, but run.json records it.
commands=(
  "tabula doctor --out $check/out > doctor.txt"
  "tabula demo --quick --out demo --threads 2 --quiet > demo.txt"
  "tabula synth cellpainting --quick --out synth > /dev/null"
  "tabula embed --arch resnet18 --seed 0 --data synth/load_data.csv --out emb --layers layer3,avgpool --threads 2 \
     --quiet"
  "tabula eval map --features emb:avgpool --pos-sameby Metadata_JCP2022 --neg-sameby Metadata_Plate \
     --neg-diffby Metadata_pert_type --null-size 1000 --out map > /dev/null"
  # HDF5 both ways (the static libhdf5.a): a HEST .h5 in, an AnnData .h5ad out.
  "tabula synth tissue --quick --out tissue > /dev/null"
  "tabula embed --arch vit:dim=64,depth=2,heads=2,patch=16,img=64 --seed 0 --data tissue/hest/P02.h5 --size 64 \
     --format h5ad --out emb-h5 --threads 2 --quiet"
)
for c in "${commands[@]}"; do
  echo "minroot: [root, nobody, no network] $c"
  start=$(date +%s)
  in_root "$c" || fail "in the minimal root: $c"
  echo "minroot:   $(( $(date +%s) - start )) s"
done
grep -q '^result: *ok' "$root$check/doctor.txt" || fail "doctor's self-check: $(cat "$root$check/doctor.txt")"
sed -n '1,/^self-check/p' "$root$check/doctor.txt" | sed 's/^/minroot:   doctor: /'

fresh_check_dir "$check"
for c in "${commands[@]}"; do
  on_host "$c" || fail "with the reference binary $reference: $c"
done
# Byte-identical outputs, except doctor's report (it describes the environment: free disk, the cgroup, ...) and the
# demo's stdout (timings).
ndiff=0 nfiles=0
while IFS= read -r f; do
  case $f in ./doctor.txt | ./demo.txt) continue ;; esac
  nfiles=$((nfiles + 1))
  if ! cmp -s "$root$check/$f" "$check/$f"; then
    echo "minroot: differs: $f" >&2
    ndiff=$((ndiff + 1))
  fi
done < <(cd "$check" && find . -type f | sort)
extra=$(diff <(cd "$check" && find . -type f | sort) <(cd "$root$check" && find . -type f | sort) || true)
[ -z "$extra" ] || fail "the two runs wrote different files: $extra"
[ $ndiff -eq 0 ] || fail "$ndiff of $nfiles output files differ between the minimal root and the build tree"
echo "minroot: $nfiles output files byte-identical to the build tree's binary"

# No jbigkit (GPL) in the static binary (cmake/tiff_no_jbig.c): a 1x1 TIFF tagged JBIG (compression 34661) is
# refused with a message naming the codec, where a libtiff with JBIG would try to decode it.
jbig=$root$check/jbig
mkdir -p "$jbig"
{
  printf 'II*\0\10\0\0\0\11\0'
  for entry in '\0\1\3\0\1\0\0\0\1\0\0\0' '\1\1\3\0\1\0\0\0\1\0\0\0' '\2\1\3\0\1\0\0\0\10\0\0\0' \
               '\3\1\3\0\1\0\0\0\145\207\0\0' '\6\1\3\0\1\0\0\0\1\0\0\0' '\21\1\4\0\1\0\0\0\172\0\0\0' \
               '\25\1\3\0\1\0\0\0\1\0\0\0' '\26\1\3\0\1\0\0\0\1\0\0\0' '\27\1\4\0\1\0\0\0\1\0\0\0'; do
    printf "$entry"
  done
  printf '\0\0\0\0\200'
} > "$jbig/img.tif"
chown -R $uid:$uid "$jbig"
in_root "tabula preprocess --data jbig --out jbig.npy --size 1 2> jbig.err" && fail "a JBIG TIFF was decoded"
grep -q 'JBIG compression is not supported' "$root$check/jbig.err" ||
  fail "a JBIG TIFF: the error does not name the codec: $(cat "$root$check/jbig.err")"
echo "minroot: JBIG codec left out: $(cat "$root$check/jbig.err")"

if [ -n "$cuda_tarball" ]; then
  unpack "$cuda_tarball"
  check_glibc_floor "$root/opt/tabula/bin/tabula" "$root/opt/tabula/lib/libtabula_cuda.so"
  fresh_check_dir "$root$check"
  # The binary links no CUDA library: it starts here, and the CUDA backend (lib/libtabula_cuda.so, loaded on first
  # use) is what fails, with a message naming the library the module cannot find.
  in_root "tabula --version > version.txt 2> version.err" ||
    fail "cuda build: does not start without CUDA libraries: $(cat "$root$check/version.err")"
  missing='lib(cublas|cublasLt|cudnn)\.so\.[0-9]+: cannot open shared object file'
  grep -qE "$missing" "$root$check/version.txt" || fail "cuda build: --version: $(cat "$root$check/version.txt")"
  in_root "tabula doctor --out $check/out > doctor.txt" || fail "cuda build: doctor: $(cat "$root$check/doctor.txt")"
  grep -E '^cuda: +unavailable: .*'"$missing" "$root$check/doctor.txt" >/dev/null ||
    fail "cuda build: doctor does not say why CUDA is unavailable: $(grep -A1 '^cuda' "$root$check/doctor.txt")"
  grep -q '^result: *ok' "$root$check/doctor.txt" ||
    fail "cuda build: doctor's self-check: $(cat "$root$check/doctor.txt")"
  echo "minroot: cuda build: doctor: $(grep '^cuda' "$root$check/doctor.txt" | head -c 300)"
  in_root "tabula synth cellpainting --quick --out synth > /dev/null" || fail "cuda build: synth"
  emb="tabula embed --arch resnet18 --seed 0 --data synth/load_data.csv --layers layer3,avgpool --quiet --threads 2"
  rc=0
  in_root "$emb --out emb-cuda --device cuda 2> cuda.err" || rc=$?
  [ $rc -ne 0 ] || fail "cuda build: --device cuda worked in a root without CUDA libraries"
  [ $rc -lt 128 ] || fail "cuda build: --device cuda crashed (exit $rc): $(cat "$root$check/cuda.err")"
  grep -qE "$missing" "$root$check/cuda.err" ||
    fail "cuda build: the error does not name the missing library: $(cat "$root$check/cuda.err")"
  grep -q 'needs CUDA [0-9]' "$root$check/cuda.err" ||
    fail "cuda build: the error does not say which CUDA/cuDNN versions it needs: $(cat "$root$check/cuda.err")"
  echo "minroot: cuda build, --device cuda (exit $rc): $(head -c 400 "$root$check/cuda.err")"
  in_root "$emb --out emb --device cpu" || fail "cuda build: --device cpu fails without CUDA libraries"
  # The same bytes as the build tree's binary (its run above, same command, same folder): features and run.json.
  ncmp=0
  while IFS= read -r f; do
    cmp -s "$root$check/emb/$f" "$check/emb/$f" || fail "cuda build: --device cpu: emb/$f differs from the build tree's"
    ncmp=$((ncmp + 1))
  done < <(cd "$check/emb" && find . -type f | sort)
  [ "$(cd "$root$check/emb" && find . -type f | sort)" = "$(cd "$check/emb" && find . -type f | sort)" ] ||
    fail "cuda build: --device cpu wrote other files than the build tree's binary"
  echo "minroot: cuda build: --device cpu works, $ncmp output files byte-identical to the build tree's"
fi
echo "minroot: ok"
