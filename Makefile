# Thin wrapper over CMake. `make demo` and `make test` are the README's quick start.
BUILD ?= build
BUILD_TYPE ?= Release
CMAKE_ARGS ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# CI=true skips the `gpu` and `long` ctest labels (gpu tests also skip themselves without a device).
CTEST_LABELS := $(if $(filter true,$(CI)),-LE "gpu|long",)
DEMO_ARGS ?=

.PHONY: all deps configure build test test-long test-gpu demo sanitize clean

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

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build folder.
sanitize:
	$(MAKE) test BUILD=build-asan BUILD_TYPE=RelWithDebInfo CMAKE_ARGS="-DTABULA_SANITIZE=address,undefined -DTABULA_CUDA=OFF $(CMAKE_ARGS)"

clean:
	rm -rf $(BUILD) build-asan
