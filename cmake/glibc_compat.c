/* arc4random for the dist build's static libstdc++, so the binary runs on glibc 2.35 (README "Deploy on a
 * cluster", .ci/glibc_floor). GCC 12's libstdc++.a has std::random_device in random.o, which calls glibc 2.36's
 * arc4random, and random.o comes into every static link through std::logic_error (stdexcept.o ->
 * cow-string-inst.o -> random_device's old-ABI constructor). tabula never constructs a random_device, but the
 * reference alone would make the loader refuse the binary on glibc < 2.36. This definition, linked before
 * libstdc++.a, takes its place: the same contract (a uniformly random 32-bit value from the kernel's CSPRNG, never
 * failing), built on getrandom (glibc 2.25). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>

uint32_t arc4random(void) {
  uint32_t value;
  unsigned char* p = (unsigned char*)&value;
  size_t got = 0;
  while (got < sizeof value) {
    ssize_t n = getrandom(p + got, sizeof value - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      abort(); /* arc4random has no error return; the kernel refusing getrandom leaves nothing sound to return */
    }
    got += (size_t)n;
  }
  return value;
}
