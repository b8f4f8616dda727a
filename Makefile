# p2pguard: `make demo` and `make test` are the two set-up commands (README).
# Both install what is missing on a fresh Debian machine first.

SHELL := /bin/bash
CARGO ?= cargo
SHARED ?= ../shared/captures
DEMO_CAPTURE ?= captures/bt-dht.pcap
APT_PACKAGES := libpcap-dev pkg-config time
# For the end-to-end enforcement tests (tests/e2e/README.md): namespaces, real
# BitTorrent clients, a tracker, and the tools that measure what crosses.
E2E_PACKAGES := iproute2 ethtool tcpdump curl opentracker iperf3 iputils-ping iptables python3 python3-libtorrent

.PHONY: all deps build demo test fmt-check clippy unit eval compare-ndpi bench bench-enforce bench-live-cpu clean

all: build

# Install the Debian packages the build needs, only if they are missing.
deps:
	@missing=""; for p in $(APT_PACKAGES) $(if $(filter 0,$(shell id -u)),$(E2E_PACKAGES)); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "Installing:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build --release --locked

demo: build
	./target/release/p2pguard analyze $(DEMO_CAPTURE)

fmt-check:
	$(CARGO) fmt --all -- --check

clippy: deps
	$(CARGO) clippy --locked --all-targets -- -D warnings

unit: deps
	@if [ ! -d "$(SHARED)/corpus" ]; then \
		echo "ERROR: the shared captures are missing at $(SHARED)/corpus; the accuracy tests need them" >&2; exit 1; \
	fi
	@# As root (CI), the end-to-end enforcement tests must run, not skip.
	P2PGUARD_SHARED_CAPTURES=$(abspath $(SHARED)) \
	P2PGUARD_E2E_REQUIRED=$(if $(filter 0,$(shell id -u)),1,0) \
		$(CARGO) test --locked --release

test: deps fmt-check clippy unit

# Accuracy tables over the shared captures and the project's own captures.
eval: deps
	P2PGUARD_SHARED_CAPTURES=$(abspath $(SHARED)) $(CARGO) test --locked --release --test accuracy -- --nocapture --test-threads 1

# Macro benchmark (benches/macro.py): p2pguard analyze with 1 and N threads,
# ndpiReader, a read-only libpcap loop and a bare flow counter, one after the
# other on one large generated capture (about 1.7 GB, made once and kept),
# and N copies of the 1-thread run at once; verdicts must match
# between 1 and N threads. Writes benches/RESULTS.md. Options for the script:
# BENCH_ARGS, e.g. make bench BENCH_ARGS='--runs 5 --threads 2'; for the
# generator (when the capture is missing): BENCH_GEN_ARGS. The same on a
# capture of longer flows (about 15 packets a flow, 1.1 GB, 107,000 flows):
#   make bench BENCH_CAPTURE=target/bench/long-flows.pcap \
#     BENCH_GEN_ARGS='--mix long-flows' \
#     BENCH_ARGS='--runs 7 --results benches/RESULTS-long-flows.md'
# (the generator's arguments are kept beside the capture, in CAPTURE.txt,
# and RESULTS.md shows them).
BENCH_DEFAULT_CAPTURE := target/bench/mix.pcap
BENCH_CAPTURE ?= $(BENCH_DEFAULT_CAPTURE)
BENCH_ARGS ?=
BENCH_GEN_ARGS ?=
bench: build
	@command -v ndpiReader >/dev/null && [ -x /usr/bin/time ] || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libndpi-bin time; }
	$(CARGO) build --release --locked --examples
	@# Generated into a temporary name, so that an interrupted run leaves no
	@# truncated capture behind; what the generator prints is kept beside it.
	@if [ ! -f $(BENCH_CAPTURE) ]; then \
		set -o pipefail; mkdir -p $(dir $(BENCH_CAPTURE)); \
		echo "Generating $(BENCH_CAPTURE)$(if $(BENCH_GEN_ARGS),, (about 15 s, 1.7 GB))"; \
		target/release/examples/bench-capture $(BENCH_GEN_ARGS) $(BENCH_CAPTURE).part \
			| sed 's|^$(BENCH_CAPTURE).part:|$(BENCH_CAPTURE):|' > $(BENCH_CAPTURE).txt.part && \
		mv $(BENCH_CAPTURE).txt.part $(BENCH_CAPTURE).txt && mv $(BENCH_CAPTURE).part $(BENCH_CAPTURE) || \
			{ rm -f $(BENCH_CAPTURE).part $(BENCH_CAPTURE).txt.part; exit 1; }; \
		cat $(BENCH_CAPTURE).txt; \
	fi
	python3 benches/macro.py --capture $(BENCH_CAPTURE) $(BENCH_ARGS) --command "make bench$(if \
		$(filter-out $(BENCH_DEFAULT_CAPTURE),$(BENCH_CAPTURE)), BENCH_CAPTURE=$(BENCH_CAPTURE))$(if \
		$(BENCH_GEN_ARGS), BENCH_GEN_ARGS='$(BENCH_GEN_ARGS)')$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')"

# Throughput, latency and CPU through the inline bridge and nfqueue, next to
# the kernel's own bridge and routing (root; see tests/e2e/README.md).
bench-enforce: build
	P2PGUARD_BIN=$(abspath target/release/p2pguard) tests/e2e/bench.sh

# The CPU that `live` uses on an idle or busy link, with 1 and 2 threads
# (root: two network namespaces and ping; see benches/live-cpu.sh).
bench-live-cpu: build
	benches/live-cpu.sh target/release/p2pguard

# Side by side with nDPI (Debian's libndpi-bin) on the same captures.
compare-ndpi: build
	@command -v ndpiReader >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libndpi-bin; }
	python3 scripts/compare-ndpi.py --p2pguard target/release/p2pguard --shared $(SHARED)

clean:
	$(CARGO) clean
