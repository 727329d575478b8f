# agentd -- see README.md.
#
#   make            build ./agentd, the plugins and the test programs
#   make test       install missing Debian deps, build, run every test
#   make run        install missing Debian deps, build, run the offline demo
#   make sanitize   build under ASan+UBSan into build/asan/ and run every test
#   make valgrind   run every test under valgrind
#   make install    PREFIX=/usr/local DESTDIR=
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS each
#   make bench      build and run the micro-benchmarks in bench/ (BENCH_SECONDS)
#   make bench-mcp  MCP tools/call round trips: agentd's client vs the TypeScript SDK's
#   make bench-workers  agentd worker vs a process per job, recovery after kill -9
#   make bench-serve  latency to the first token through agentd serve (shared mock)
#   make bench-serve-floor  CPU and RSS per conversation of libcurl + json-c alone (shared mock)
#
# Required flags live in AD_CFLAGS so that `make CFLAGS=-O0` cannot drop them.
# Everything is built into the tree rooted at $(D) (empty: this folder;
# build/asan/ for `make sanitize`), objects under $(D)build/obj.

VERSION := 0.1.0
PREFIX  ?= /usr/local
DESTDIR ?=
PLUGINDIR := $(PREFIX)/lib/agentd/plugins
DOCDIR    := $(PREFIX)/share/doc/agentd
CC      ?= cc
CFLAGS  ?= -O2 -g -gdwarf-4
WERROR  ?= -Werror
SAN     ?=
D       ?=

# Linked: the core. Compiled against but loaded on first use with dlopen
# (runtime/base/lazy.h): libyaml for cassettes, libedit for the REPL, hiredis for
# the Redis job queue, so a one-shot run does not pay for them, and libcurl, so
# that the plugin workers agentd starts from its own binary do not (SQLite is
# linked statically).
PKGS      := libuv json-c
LAZY_PKGS := yaml-0.1 libedit hiredis libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(LAZY_PKGS) sqlite3 2>/dev/null)
# SQLite is linked statically: the shared library is built with BIND_NOW, so
# loading it resolves ~3000 relocations through every library in scope
# (about 1 ms per start); linked in, its calls bind lazily and cost nothing
# until sessions are used.
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -Wl,-Bstatic -lsqlite3 -Wl,-Bdynamic
# Unit tests and benchmarks may call the optional libraries directly (to
# inspect a database, to set up libcurl).
TEST_LIBS  := $(shell pkg-config --libs $(LAZY_PKGS) 2>/dev/null)

# llhttp, the HTTP parser of `agentd serve`: Debian's node-llhttp ships its
# generated C sources (there is no library package), compiled in here as
# they are, without our warning flags.
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
AD_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra $(WERROR) \
             -Wshadow -Wstrict-prototypes -Wmissing-prototypes -MMD -MP \
             -Iinclude -Iruntime -I$(LLHTTP_INC) -DAGENTD_VERSION='"$(VERSION)"' $(PKG_CFLAGS) $(SAN)
LDLIBS  := $(PKG_LIBS) -ldl -lpthread -lm
PLUGIN_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra $(WERROR) -Iinclude \
                 -fPIC -fvisibility=hidden -shared $(SAN)
# A plugin is compiled and linked in one step; its header dependencies go
# to a .d file under $(OBJDIR), like those of the objects.
plugin_d = $(OBJDIR)/$(patsubst $(D)%,%,$@).d
# -z defs: a plugin that uses a host symbol fails to link. The static ASan
# runtime leaves __asan_* undefined in shared objects, so not under SAN.
PLUGIN_LDFLAGS := $(if $(SAN),,-Wl,-z,defs)

OBJDIR  := $(D)build/obj
SRC     := $(sort $(wildcard runtime/*/*.c))
LIBSRC  := $(filter-out runtime/cli/main.c,$(SRC))
OBJ     := $(SRC:runtime/%.c=$(OBJDIR)/runtime/%.o)
LLHTTP_OBJ := $(addprefix $(OBJDIR)/llhttp/,llhttp.o api.o http.o)
LIBOBJ  := $(LIBSRC:runtime/%.c=$(OBJDIR)/runtime/%.o) $(LLHTTP_OBJ)
LIB     := $(OBJDIR)/libagentd.a

PLUGINS      := $(patsubst %.c,$(D)%.so,$(wildcard plugins/*.c))
TEST_PLUGINS := $(patsubst %.c,$(D)%.so,$(wildcard tests/plugins/*.c))
TEST_PRELOAD := $(patsubst %.c,$(D)%.so,$(wildcard tests/preload/*.c))
# Unit tests mirror runtime/ (tests/unit/core/test_stream.c tests
# runtime/core/stream.c); their programs sit side by side in build/unit/.
UNIT_SRC     := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_BINS    := $(addprefix $(D)build/unit/,$(notdir $(UNIT_SRC:.c=)))
TEST_PROGS   := $(patsubst tests/%.c,$(D)tests/%,$(wildcard tests/toml-decoder.c))

all: $(D)agentd $(PLUGINS) $(TEST_PLUGINS) $(TEST_PRELOAD) $(UNIT_BINS) $(TEST_PROGS)

$(OBJDIR)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(AD_CFLAGS) $(CFLAGS) -c -o $@ $<

$(OBJDIR)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -w -I$(LLHTTP_INC) $(CFLAGS) $(SAN) -c -o $@ $<

# configs/starter.toml, the config `agentd --init` writes, as C string
# literals for runtime/cli/init.c (backslashes, quotes and the ? of trigraphs
# escaped).
$(OBJDIR)/gen/starter.h: configs/starter.toml
	@mkdir -p $(@D)
	sed -e 's/[\\"?]/\\&/g' -e 's/^/"/' -e 's/$$/\\n"/' $< > $@
$(OBJDIR)/runtime/cli/init.o: $(OBJDIR)/gen/starter.h
$(OBJDIR)/runtime/cli/init.o: AD_CFLAGS += -I$(OBJDIR)/gen

$(LIB): $(LIBOBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(D)agentd: $(OBJDIR)/runtime/cli/main.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(D)plugins/%.so: plugins/%.c include/agentd/plugin.h
	@mkdir -p $(@D) $(dir $(plugin_d))
	$(CC) $(PLUGIN_CFLAGS) -MMD -MP -MF $(plugin_d) $(CFLAGS) $(PLUGIN_LDFLAGS) -o $@ $<

# Test plugins may be deliberately broken; they are built without -z defs.
$(D)tests/plugins/%.so: tests/plugins/%.c include/agentd/plugin.h
	@mkdir -p $(@D) $(dir $(plugin_d))
	$(CC) $(PLUGIN_CFLAGS) -MMD -MP -MF $(plugin_d) $(CFLAGS) -o $@ $<
# A plugin of ABI 1.0 is built against the header of that ABI.
$(D)tests/plugins/abi10.so: tests/plugins/abi10.c tests/compat/plugin-1.0.h
	@mkdir -p $(@D) $(dir $(plugin_d))
	$(CC) $(PLUGIN_CFLAGS) -MMD -MP -MF $(plugin_d) $(CFLAGS) -o $@ $<

# LD_PRELOAD helpers of the integration tests (they wrap libc functions).
$(D)tests/preload/%.so: tests/preload/%.c
	@mkdir -p $(@D) $(dir $(plugin_d))
	$(CC) $(PLUGIN_CFLAGS) -MMD -MP -MF $(plugin_d) $(CFLAGS) -o $@ $< -ldl

define unit_rule
$(D)build/unit/$(notdir $(1:.c=)): $(OBJDIR)/$(1:.c=.o) $(LIB)
	@mkdir -p $$(@D)
	$$(CC) $$(SAN) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS) $$(TEST_LIBS)
endef
$(foreach s,$(UNIT_SRC),$(eval $(call unit_rule,$(s))))

$(D)tests/%: $(OBJDIR)/tests/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Micro-benchmarks (bench/README.md): every bench/bench_*.c is a program
# linked against the library, bench/plugins/*.c are the plugins they load.
BENCH_FIRST   := $(wildcard $(patsubst %,bench/bench_%.c,sse stream request dispatch))
BENCH_SRC     := $(BENCH_FIRST) $(filter-out $(BENCH_FIRST),$(sort $(wildcard bench/bench_*.c)))
BENCH_BINS    := $(patsubst bench/%.c,$(D)build/bench/%,$(BENCH_SRC))
BENCH_PLUGINS := $(patsubst bench/plugins/%.c,$(D)build/bench/plugins/%.so,$(wildcard bench/plugins/*.c))

$(D)build/bench/%: $(OBJDIR)/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(TEST_LIBS)

$(D)build/bench/plugins/%.so: bench/plugins/%.c include/agentd/plugin.h
	@mkdir -p $(@D) $(dir $(plugin_d))
	$(CC) $(PLUGIN_CFLAGS) -MMD -MP -MF $(plugin_d) $(CFLAGS) $(PLUGIN_LDFLAGS) -o $@ $<

BENCH_SECONDS ?= 0.4
bench: $(BENCH_BINS) $(BENCH_PLUGINS)
	@echo "bench: $(BENCH_SECONDS)s per figure unless noted; see bench/README.md"
	@set -e; for b in $(BENCH_BINS); do BENCH_SECONDS=$(BENCH_SECONDS) BENCH_PLUGIN_DIR=$(D)build/bench/plugins $$b; done

# agentd's MCP client against the official TypeScript SDK's on one trivial
# stdio server, paired (bench/README.md; needs ../shared/mcp, else skipped).
bench-mcp: $(D)build/bench/bench_mcp
	@python3 bench/mcp_vs_ts.py --bench $(D)build/bench/bench_mcp; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]

# Latency to the first token through agentd serve against the shared
# benchmark's paced mock, N=100 and N=1000 (bench/README.md; needs
# ../shared/bench, else skipped).
bench-serve: all $(D)build/bench/ttft_client
	@python3 bench/serve_ttft.py --agentd $(D)agentd --client $(D)build/bench/ttft_client $(SERVE_TTFT_ARGS); \
	rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]

# What libcurl multi and json-c alone cost for the conversations of the
# shared benchmark's concurrent scenario, the floor under agentd serve's
# figures (bench/README.md; needs ../shared/bench, else skipped). The
# client links those two libraries and nothing of agentd.
$(D)build/bench/serve_floor: $(OBJDIR)/bench/serve_floor.o
	@mkdir -p $(@D)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcurl json-c 2>/dev/null)

bench-serve-floor: $(D)build/bench/serve_floor
	@python3 bench/serve_floor.py --client $(D)build/bench/serve_floor $(SERVE_FLOOR_ARGS); \
	rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 77 ]

# The worker against one process per job, and its recovery after kill -9
# (bench/README.md, "Workers"): real processes, Redis, the mock; ~2.5 min.
bench-workers: all
	@python3 bench/workers.py

deps:
	@sh mk/deps.sh

test: deps
	@$(MAKE) --no-print-directory all
	@sh tests/run.sh

ASAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
sanitize: deps
	@$(MAKE) --no-print-directory all D=build/asan/ SAN="$(ASAN_FLAGS)" CFLAGS="-O1 -g"
	@AGENTD_DIR=build/asan AGENTD_SANITIZED=1 sh tests/run.sh

valgrind:
	@sh mk/deps.sh valgrind
	@$(MAKE) --no-print-directory all
	@AGENTD_WRAP="valgrind -q --error-exitcode=97 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect" \
	  sh tests/run.sh

# The demo needs agentd and the plugins it replays with, not the tests.
run: deps
	@$(MAKE) --no-print-directory $(D)agentd $(PLUGINS)
	@sh mk/demo.sh

# The installed agentd is main.c compiled once more, with $(PLUGINDIR)
# built in: a config that names no [plugins] dir gets the installed
# plugins. The agentd of the build tree has no such default, so that an
# installed copy's plugins never creep into the tests. The stamp holds
# the folder, so that another PREFIX rebuilds it.
INSTDIR := $(D)build/install
$(INSTDIR)/plugindir: FORCE
	@mkdir -p $(@D)
	@echo '$(PLUGINDIR)' | cmp -s - $@ 2>/dev/null || echo '$(PLUGINDIR)' > $@
$(INSTDIR)/main.o: runtime/cli/main.c $(INSTDIR)/plugindir
	$(CC) $(AD_CFLAGS) $(CFLAGS) -DAGENTD_PLUGIN_DIR='"$(PLUGINDIR)"' -c -o $@ $<
$(INSTDIR)/agentd: $(INSTDIR)/main.o $(LIB)
	$(CC) $(SAN) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The manual page names the documentation and plugin folders of the
# default PREFIX; installed, it names those of this one.
install: $(INSTDIR)/agentd $(PLUGINS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/agentd \
	           $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	           $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(DOCDIR)
	install -m 0755 $(INSTDIR)/agentd $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 include/agentd/plugin.h $(DESTDIR)$(PREFIX)/include/agentd/
	install -m 0755 $(PLUGINS) $(DESTDIR)$(PLUGINDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' agentd-plugin.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/agentd-plugin.pc
	sed -e 's|/usr/local/|$(PREFIX)/|g' docs/agentd.1 > $(DESTDIR)$(PREFIX)/share/man/man1/agentd.1
	install -m 0644 README.md $(filter-out docs/agentd.1,$(wildcard docs/*)) $(DESTDIR)$(DOCDIR)/
	install -m 0644 configs/starter.toml $(DESTDIR)$(DOCDIR)/agent.toml.example

format:
	clang-format -i runtime/*/*.c runtime/*/*.h include/agentd/*.h plugins/*.c tests/unit/*/*.c

clean:
	rm -rf build agentd plugins/*.so tests/plugins/*.so tests/preload/*.so $(TEST_PROGS)

# libFuzzer targets: make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS=fuzz_toml]
include mk/fuzz.mk

.PHONY: all bench bench-mcp bench-serve bench-serve-floor bench-workers deps test sanitize valgrind run install format clean FORCE
.SECONDARY:
-include $(shell find build -name '*.d' 2>/dev/null)
