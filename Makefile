# Thin wrapper over CMake. `make demo` and `make test` are the README's quick start.
BUILD ?= build
BUILD_TYPE ?= Release
CMAKE_ARGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# CI=true skips the `gpu` and `long` ctest labels (gpu tests also skip themselves without a device).
CTEST_LABELS := $(if $(filter true,$(CI)),-LE "gpu|long",)
DEMO_ARGS ?=

.PHONY: all deps configure build test test-long test-gpu demo sanitize fuzz fuzz-long dist dist-mpi dist-cuda \
        test-deploy clean

all: build

deps:
	@bash .ci/deps

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

configure: $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_LABELS)

test-long: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L long

test-gpu: build
	cd $(BUILD) && ctest --output-on-failure -L gpu

demo: build
	./$(BUILD)/tabula demo $(DEMO_ARGS)

# The whole suite under AddressSanitizer (+ LeakSanitizer) + UndefinedBehaviorSanitizer, in its own build folder.
# float-cast-overflow is named because GCC's `undefined` leaves it out (clang's includes it); it caught a real
# float -> uint8 cast in session 2. Not part of .ci/run (it would triple CI time, bench/RESULTS_fuzz.md):
# run it nightly / before merging, or `CI_SANITIZE=1 bash .ci/run` to run it after the normal suite.
sanitize:
	$(MAKE) test BUILD=build-asan BUILD_TYPE=RelWithDebInfo CMAKE_ARGS="-DTABULA_SANITIZE=address,undefined,float-cast-overflow -DTABULA_CUDA=OFF $(CMAKE_ARGS)"

# libFuzzer targets (clang 16: C++20 lambda captures of structured bindings; ASan+UBSan), each run FUZZ_SECONDS on its corpus: make fuzz FUZZ_SECONDS=1800
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= npy safetensors checkpoint image tiff jp2 json csv relationships arch cli_args
FUZZ_RUNS ?= 10000000
fuzz:
	@bash .ci/deps fuzz
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-16 \
	  -DCMAKE_CXX_COMPILER=clang++-16 -DTABULA_FUZZ=ON -DTABULA_SANITIZE=address,undefined -DTABULA_CUDA=OFF \
	  -DTABULA_BENCH=OFF -DTABULA_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build build-fuzz -j $(JOBS)
	cd build-fuzz && ctest --output-on-failure -L fuzz

# The long campaign (issue #11: >= 10M executions or 30 min per target): the targets one after the other, each until
# FUZZ_RUNS executions or FUZZ_SECONDS, on a scratch copy of its corpus, niced; one line per target with executions,
# wall and CPU time, exec/s and corpus size: make fuzz-long FUZZ_SECONDS=1800
fuzz-long:
	@bash .ci/deps fuzz
	cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang-16 \
	  -DCMAKE_CXX_COMPILER=clang++-16 -DTABULA_FUZZ=ON -DTABULA_SANITIZE=address,undefined -DTABULA_CUDA=OFF \
	  -DTABULA_BENCH=OFF -DTABULA_FUZZ_SECONDS=$(FUZZ_SECONDS)
	cmake --build build-fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	FUZZ_RUNS=$(FUZZ_RUNS) bash tests/fuzz/long_run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Deployment (README "Deploy on a cluster"): dist/tabula-<version>-linux-x86_64.tar.gz, a binary whose only shared
# libraries are glibc's (static libstdc++, libtiff, HDF5, ...: cmake/static.cmake), built in build-dist/. dist-mpi
# links the node's Open MPI (shared), dist-cuda the CUDA backend. test-deploy runs the tarball in a minimal Debian
# root as a non-root user without network (root + debootstrap; minutes; not part of `make test`), and the CUDA
# tarball there too when dist/ has one (`make dist-cuda test-deploy`).
dist:
	JOBS=$(JOBS) bash .ci/dist cpu
dist-mpi:
	JOBS=$(JOBS) bash .ci/dist mpi
dist-cuda:
	JOBS=$(JOBS) bash .ci/dist cuda
test-deploy: dist configure
	cmake --build $(BUILD) -j $(JOBS) --target tabula
	bash tests/deploy/minroot.sh dist/tabula-*-linux-x86_64.tar.gz $(BUILD)/tabula \
	  $(wildcard dist/tabula-*-linux-x86_64-cuda.tar.gz)

clean:
	rm -rf $(BUILD) build-asan build-fuzz build-dist build-dist-mpi build-dist-cuda dist
