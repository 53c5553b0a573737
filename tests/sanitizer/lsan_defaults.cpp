// Linked into the `tabula` executable of sanitizer builds only (TABULA_SANITIZE with address or leak; see the top
// CMakeLists.txt). LeakSanitizer reads this hook at start-up, before main.
//
// Open MPI leaks at MPI_Finalize by design (component registries, argv copies, hwloc bitmaps: ~121 KB in ~3350
// allocations per rank on Debian 12's Open MPI 4.1), and most of those allocations come from MCA components that
// Open MPI dlcloses before exit, so their stacks end in "<unknown module>" and no suppression by library name can
// match them. A rank started by mpirun (OMPI_COMM_WORLD_SIZE set) therefore does not check for leaks; its
// memory errors and undefined behaviour are still reported, and the same embed/eval code is leak-checked in the
// single-process tests. Every other process keeps the default (leaks checked).
//
// The hook runs from the sanitizer's start-up (.preinit_array), before libc has set up `environ` for getenv and
// before the sanitizer's shadow memory and interceptors exist, so the environment is read from /proc/self/environ
// with raw system calls, and this file is compiled without instrumentation (-fno-sanitize=all, CMakeLists.txt).
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {
bool started_by_mpirun() {
  static char env[1 << 16];
  const long fd = syscall(SYS_openat, AT_FDCWD, "/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  long n = 0;
  for (long k; n < long(sizeof env) - 1 && (k = syscall(SYS_read, fd, env + n, sizeof env - 1 - size_t(n))) > 0;) n += k;
  syscall(SYS_close, fd);
  static const char key[] = "OMPI_COMM_WORLD_SIZE=";
  // A plain loop: memcmp/strstr are intercepted by the sanitizer, whose interceptors are not set up yet.
  for (long i = 0; i + long(sizeof key) - 1 <= n; ++i) {
    if (i > 0 && env[i - 1] != 0) continue;
    long k = 0;
    while (key[k] != 0 && env[i + k] == key[k]) ++k;
    if (key[k] == 0) return true;
  }
  return false;
}
}  // namespace

extern "C" const char* __lsan_default_options() { return started_by_mpirun() ? "detect_leaks=0" : ""; }
