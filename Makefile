# container-machine: thin wrapper over meson so that the usual verbs work.
PREFIX ?= /usr/local
DESTDIR ?=
BUILDDIR ?= build
MESON_OPTS ?=

.PHONY: all build install check demo deps clean

all: build

$(BUILDDIR)/build.ninja:
	meson setup $(BUILDDIR) --prefix=$(PREFIX) $(MESON_OPTS)

build: $(BUILDDIR)/build.ninja
	meson configure $(BUILDDIR) --prefix=$(PREFIX) >/dev/null
	ninja -C $(BUILDDIR)

install: build
	DESTDIR=$(DESTDIR) meson install -C $(BUILDDIR) --no-rebuild

# Every test: unit tests (cmocka) and integration tests (pytest, real binaries).
check: build
	scripts/check.sh $(BUILDDIR)

# The main job: start the system, build a test image, serve it from a local registry
# configured as the docker.io mirror, pull alpine:latest through it, list images.
demo: build
	scripts/demo.sh $(BUILDDIR)

# Installs the Debian/Ubuntu packages needed to build, run and test.
deps:
	scripts/install-deps.sh

clean:
	rm -rf $(BUILDDIR) build-asan build-fuzz
