# gradc: a compiler for .grad graph files (see README.md).
#
#   make            build build/gradc and build/libgradrt.a
#   make test       install missing dependencies, build, run every test suite
#   make demo       install missing dependencies, build, train IMM on the checkerboard
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make deps       apt-get install what is missing (fast no-op when all is present)
#   make fuzz       build the libFuzzer targets (clang-19) and run each for FUZZ_SECONDS
#   make leakcheck  valgrind over the compiler library's suites and gradc check (slow)
#   make golden     regenerate tests/bad/*.expected after an intended diagnostic change
#
# LLVM must be 19: the unversioned llvm-config on Debian 12 is LLVM 14 (no opaque
# pointers, no fast-math flags in its C API). Never fall back to it.

LLVM_CONFIG ?= llvm-config-19
CC ?= cc
BUILD ?= build
OPT ?= -O2

DEB_PKGS := llvm-19-dev libffi-dev check libopenblas-dev pkg-config zlib1g-dev \
            libc6-dev make gcc python3 python3-numpy clang-19 libclang-rt-19-dev \
            openmpi-bin libopenmpi-dev

WARN := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wpointer-arith \
        -Wno-unused-parameter -Wvla -Wformat=2
BASE_CFLAGS := -std=gnu11 -g $(OPT) $(WARN) -fno-strict-aliasing -ffp-contract=off -Icompiler -Iruntime -D_GNU_SOURCE
SAN ?=
LLVM_CFLAGS = $(shell $(LLVM_CONFIG) --cflags 2>/dev/null | sed -e 's/-O[0-9s]//g' -e 's/-DNDEBUG//g' -e 's/-std=[^ ]*//g')
LLVM_LIBS = $(shell $(LLVM_CONFIG) --ldflags --libs 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
CFLAGS_ALL = $(BASE_CFLAGS) $(SAN) $(CFLAGS)
RT_LIBS := -lopenblas -lmvec -lm -lpthread -lz
LIBS = $(LLVM_LIBS) -lffi -ldl $(RT_LIBS)

COMPILER_SRC := $(filter-out compiler/main.c,$(wildcard compiler/*.c))
RUNTIME_SRC := $(wildcard runtime/*.c)
TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_HELPERS := $(wildcard tests/unit/helpers/*.c)

COMPILER_OBJ := $(COMPILER_SRC:%.c=$(BUILD)/%.o)
RUNTIME_OBJ := $(RUNTIME_SRC:%.c=$(BUILD)/%.o)
HELPER_OBJ := $(TEST_HELPERS:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test unit-tests asan test-asan demo clean golden bench fuzz fuzz-build leakcheck
.DEFAULT_GOAL := all

# The MPI runtime variant (docs/distributed.md): the same objects, except runtime/comm.c
# compiled with -DGR_MPI. Built when Open MPI's development files are installed.
HAVE_MPI := $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1)
MPI_CFLAGS = $(shell pkg-config --cflags ompi-c 2>/dev/null)
RT_MPI := $(if $(HAVE_MPI),$(BUILD)/libgradrt_mpi.a)

all: $(BUILD)/gradc $(BUILD)/libgradrt.a $(RT_MPI)

deps:
	@sh tools/deps.sh $(DEB_PKGS)

$(BUILD)/compiler/%.o: compiler/%.c compiler/*.h compiler/ops.def runtime/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LLVM_CFLAGS) -c $< -o $@

$(BUILD)/runtime/%.o: runtime/%.c runtime/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The optimizer's loops call sqrt; without errno they vectorize (runtime/optim.c).
$(BUILD)/runtime/optim.o: CFLAGS_ALL += -fno-math-errno
# rng_fill.c: -O3 and no trapping/errno so its gr_normal_f64 loop vectorizes (see the file)
$(BUILD)/runtime/rng_fill.o: CFLAGS_ALL += -O3 -fno-trapping-math -fno-math-errno
# rng_fast.c: libmvec's vector logf/sinf/cosf (glibc declares them only under fast-math)
$(BUILD)/runtime/rng_fast.o: CFLAGS_ALL += -O3 -ffast-math -fopenmp-simd

$(BUILD)/tests/unit/helpers/%.o: tests/unit/helpers/%.c tests/unit/helpers/*.h compiler/*.h runtime/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CHECK_CFLAGS) -Itests/unit/helpers -c $< -o $@

$(BUILD)/libgradc.a: $(COMPILER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libgradrt.a: $(RUNTIME_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/runtime_mpi/comm.o: runtime/comm.c runtime/*.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DGR_MPI $(MPI_CFLAGS) -c $< -o $@

$(BUILD)/libgradrt_mpi.a: $(filter-out $(BUILD)/runtime/comm.o,$(RUNTIME_OBJ)) $(BUILD)/runtime_mpi/comm.o
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/gradc: $(BUILD)/compiler/main.o $(BUILD)/libgradc.a $(BUILD)/libgradrt.a
	$(CC) $(SAN) -rdynamic -o $@ $^ $(LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(HELPER_OBJ) $(BUILD)/libgradc.a $(BUILD)/libgradrt.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LLVM_CFLAGS) $(CHECK_CFLAGS) -Itests/unit/helpers -rdynamic -o $@ $< \
	  $(HELPER_OBJ) $(BUILD)/libgradc.a $(BUILD)/libgradrt.a $(CHECK_LIBS) $(LIBS)

unit-tests: $(TEST_BIN) $(BUILD)/gradc $(RT_MPI)

# Each suite prints Check's summary line ("100%: Checks: N, Failures: 0, Errors: 0").
test: deps
	@$(MAKE) --no-print-directory unit-tests
	@BUILD=$(BUILD) sh tests/run_all.sh

asan test-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" unit-tests
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=0 sh tests/run_all.sh

# Fuzzing (docs/reliability.md): tests/fuzz/fuzz_*.c against the compiler and runtime
# compiled by clang-19 with -fsanitize=fuzzer-no-link,address,undefined into build-fuzz/.
# Each target runs FUZZ_SECONDS from its seeds (tests/fuzz/corpus/NAME, read-only) plus
# what it found before (build-fuzz/corpus/NAME); crashes go to build-fuzz/artifacts/.
FUZZ_SECONDS ?= 20
# A fixed seed makes a run from a clean checkout (CI) repeatable; FUZZ_SEED=0 for fresh
# random seeds in long local runs.
FUZZ_SEED ?= 1
FUZZ_CC ?= clang-19
FUZZ_BUILD := build-fuzz
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_BUILD)/libgradc.a \
                      $(FUZZ_BUILD)/libgradrt.a
	$(FUZZ_CC) $(BASE_CFLAGS) -O1 $(FUZZ_SAN) -fsanitize=fuzzer $(LLVM_CFLAGS) \
	  -DFUZZ_STDLIB='"$(CURDIR)/stdlib"' -o $@ $< $(FUZZ_BUILD)/libgradc.a \
	  $(FUZZ_BUILD)/libgradrt.a $(LIBS)

# The libraries come from the ordinary rules, run with BUILD=build-fuzz and clang-19.
fuzz-build: deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT=-O1 SAN="$(FUZZ_SAN)" \
	  CFLAGS=-Wno-format-nonliteral \
	  $(FUZZ_BUILD)/libgradc.a $(FUZZ_BUILD)/libgradrt.a
	@$(MAKE) --no-print-directory $(FUZZ_BIN)

fuzz: fuzz-build
	@FUZZ_SEED=$(FUZZ_SEED) sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

leakcheck:
	@$(MAKE) --no-print-directory unit-tests
	@sh tools/leakcheck.sh $(BUILD)

golden: $(BUILD)/gradc
	@sh tests/bad/run.sh --update $(BUILD)/gradc

demo: deps
	@$(MAKE) --no-print-directory all
	@sh examples/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@sh bench/run.sh

clean:
	rm -rf build build-asan build-fuzz
