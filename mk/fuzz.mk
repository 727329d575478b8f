# fuzz.mk -- libFuzzer targets. Include it from the Makefile, or run
#
#   make -f Makefile -f mk/fuzz.mk fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS=fuzz_toml]
#
# Every tests/fuzz/fuzz_<name>.c is a target built into build/fuzz/fuzz_<name>.
# Its first line names the runtime sources it is linked with:
#
#   /* fuzz-sources: runtime/base/toml.c runtime/base/buf.c */
#
# and an optional second line names the libraries it needs:
#
#   /* fuzz-libs: -ljson-c */
#
# Its seed corpus is tests/fuzz/corpus/<name>/. The seeds are copied into
# build/fuzz/corpus/<name>/ and the fuzzer runs there, so what it learns
# accumulates between runs without ever writing into the source tree. An
# optional tests/fuzz/<name>.dict is passed as -dict. Crash reproducers go to
# build/fuzz/ (replay one with ./build/fuzz/fuzz_<name> FILE).
# `fuzz` runs each selected target for FUZZ_SECONDS, one after the other.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_ARGS    ?= -max_len=4096
FUZZ_SAN     ?= -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
                -Iinclude -Iruntime -g -O1 $(FUZZ_SAN)
FUZZ_ALL     := $(patsubst tests/fuzz/%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_TARGETS ?= $(FUZZ_ALL)

fuzz_sources = $(shell sed -n '1s|^/\* *fuzz-sources: *\(.*[^ ]\) *\*/.*|\1|p' tests/fuzz/$(1).c)
fuzz_libs = $(shell sed -n '2s|^/\* *fuzz-libs: *\(.*[^ ]\) *\*/.*|\1|p' tests/fuzz/$(1).c)

define fuzz_rule
build/fuzz/$(1): tests/fuzz/$(1).c $(call fuzz_sources,$(1)) $(wildcard runtime/*/*.h include/agentd/*.h)
	@mkdir -p $$(@D)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -o $$@ $$(filter %.c,$$^) $(call fuzz_libs,$(1)) -lm
endef
$(foreach t,$(FUZZ_ALL),$(eval $(call fuzz_rule,$(t))))

fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/%)

# clang and its libFuzzer runtime, installed like the build deps.
fuzz-deps:
	@sh mk/deps.sh fuzz

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    name=$${t#fuzz_}; corpus=build/fuzz/corpus/$$name; mkdir -p $$corpus; \
	    if [ -d tests/fuzz/corpus/$$name ]; then cp tests/fuzz/corpus/$$name/* $$corpus/; fi; \
	    dict=; if [ -f tests/fuzz/$$name.dict ]; then dict=-dict=tests/fuzz/$$name.dict; fi; \
	    echo "fuzz: $$t for $(FUZZ_SECONDS)s over $$corpus"; \
	    ./build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/ \
	        $(FUZZ_ARGS) $$dict $$corpus; \
	done

.PHONY: fuzz fuzz-build fuzz-deps
