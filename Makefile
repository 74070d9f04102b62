# The two set-up commands of the README: `make run` and `make test`.
# Both install the missing Debian packages (scripts/debian-packages.txt) first.

JOBS ?= $(shell nproc)
CONFIG ?=
SERVE_ARGS ?= $(if $(CONFIG),--config $(CONFIG))

.PHONY: all deps run build release test asan unit integration clang fuzz bench bench-pypi bench-oci bench-runner bench-ci bench-scale bench-tests format format-check clean

all: release

deps:
	@scripts/install-deps

build/release/build.ninja: CMakePresets.json CMakeLists.txt | deps
	cmake --preset release

build/asan/build.ninja: CMakePresets.json CMakeLists.txt | deps
	cmake --preset asan

build/clang/build.ninja: CMakePresets.json CMakeLists.txt | deps
	cmake --preset clang

release: deps build/release/build.ninja
	cmake --build --preset release -j $(JOBS)

build: release

# Build the release binary and start it on the built-in config (or CONFIG=FILE).
run: release
	build/release/cli/pantry serve $(SERVE_ARGS)

asan: deps build/asan/build.ninja
	cmake --build --preset asan -j $(JOBS)

# Build with ASan+UBSan and run every test: unit tests first, then integration tests, in parallel
# (each uses its own free ports and temp dirs; the slowest start first: COST in tests/).
# JUnit XML lands in build/asan/junit/ (unit.xml, integration.xml).
INTEGRATION_JOBS ?= 3
test:
	@scripts/install-deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory asan
	ctest --preset asan -L unit -j $(JOBS) --output-junit junit/unit.xml
	ctest --preset asan -L integration -j $(INTEGRATION_JOBS) --output-junit junit/integration.xml

unit: asan
	ctest --preset asan -L unit -j $(JOBS)

integration: asan
	ctest --preset asan -L integration -j $(INTEGRATION_JOBS)

# clang 14 build with ASan+UBSan, its tests, and the libFuzzer targets built.
clang: deps build/clang/build.ninja
	cmake --build --preset clang -j $(JOBS)
	ctest --preset clang -j $(JOBS)

# Run each fuzz target for FUZZ_SECONDS (default 60) on its seed corpus.
FUZZ_SECONDS ?= 60
fuzz: clang
	@for f in build/clang/tests/fuzz/*_fuzz; do \
	  name=$$(basename $$f _fuzz); \
	  mkdir -p build/clang/fuzz-corpus/$$name; \
	  echo "== $$f for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) build/clang/fuzz-corpus/$$name tests/fuzz/corpus/$$name || exit 1; \
	done

bench: release
	build/release/bench/cache_bench

# pantry's PyPI proxy against nginx proxy_cache on one loopback workload (bench/README.md).
BENCH_PYPI_ARGS ?=
bench-pypi: release
	/usr/bin/python3 bench/pypi/run.py build/release/cli/pantry $(BENCH_PYPI_ARGS)

# pantry's OCI pull-through cache against docker-registry's, nginx static files as the ceiling
# (bench/README.md).
BENCH_OCI_ARGS ?=
bench-oci: release
	/usr/bin/python3 bench/oci/run.py build/release/cli/pantry $(BENCH_OCI_ARGS)

# `pantry run` against runc alone on an equivalent bundle, podman and docker; `pantry build`
# against docker's classic builder and buildah (bench/README.md). Needs root.
BENCH_RUNNER_ARGS ?=
bench-runner: release
	/usr/bin/python3 bench/runner/run.py build/release/cli/pantry $(BENCH_RUNNER_ARGS)

# The CI coordinator: `pantry submit` to output and result against `pantry run` of the same step,
# 1,000 jobs on 2 slots, following a 100 MB log (bench/README.md). Needs root.
BENCH_CI_ARGS ?=
bench-ci: release
	/usr/bin/python3 bench/ci/run.py build/release/cli/pantry $(BENCH_CI_ARGS)

# One pantry against three behind HAProxy (deploy/haproxy/haproxy.cfg): the hop's cost on a warm
# workload, one upstream fetch per object on a cold herd, the keys that move when a fourth
# instance joins (bench/README.md).
BENCH_SCALE_ARGS ?=
bench-scale: release
	/usr/bin/python3 bench/scale/run.py build/release/cli/pantry $(BENCH_SCALE_ARGS)

# Test intelligence: time to the first failure report of a 200-test suite, pantry's order
# against plain pytest on the same runner, first and second run; shard balance against
# pytest-xdist's --dist load and an alphabetical split (bench/README.md). Needs root.
BENCH_TESTS_ARGS ?=
bench-tests: release
	/usr/bin/python3 bench/tests/run.py build/release/cli/pantry $(BENCH_TESTS_ARGS)

FORMAT_FILES = $(shell git ls-files '*.cpp' '*.h')

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: $(words $(FORMAT_FILES)) files formatted"

clean:
	rm -rf build
