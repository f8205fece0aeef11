# The two front-door commands: `make run` and `make test`. Both set up .venv and build the
# web UI on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
NPM ?= npm

.PHONY: run test lint format install examples web api-types check-api-types clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev]'
	@touch $(STAMP)

install: $(STAMP)

# The web UI: web/ (Preact + TypeScript) built by Vite into toru/web_dist, which Toru serves.
# `npm ci` runs again when the lock file changes; the build when any of its inputs does.
NPM_CHECK = @command -v $(NPM) >/dev/null 2>&1 || { \
	echo "make: npm not found. The web UI is built with Node.js (20.19 or later) and npm;" >&2; \
	echo "      install them (https://nodejs.org/, or apt-get install nodejs npm where that" >&2; \
	echo "      gives Node 20.19 or later) and run make again." >&2; \
	exit 1; }
WEB_INPUTS := $(shell find web/src web/public -type f 2>/dev/null) \
	$(wildcard web/index.html web/package.json web/vite.config.* web/tsconfig*.json)

web/node_modules/.installed: web/package-lock.json
	$(NPM_CHECK)
	cd web && $(NPM) ci --no-audit --no-fund
	@touch $@

toru/web_dist/index.html: web/node_modules/.installed $(WEB_INPUTS)
	$(NPM_CHECK)
	cd web && $(NPM) run build
	@touch $@

web: toru/web_dist/index.html

# The web UI's TypeScript types of the API, generated from the OpenAPI document (toru/openapi.py,
# whose plugin status schemas come from toru/plugins/status.py) by openapi-typescript. The file
# is committed; `make lint` fails when it is not what this would write now.
API_TYPES := web/src/api/openapi.d.ts
# $(call write_api_types,FILE): writes the types to FILE, header first. Objects without
# properties (`extra`, event details) are records of unknown values, not of `never`.
write_api_types = tmp="$$(mktemp -d)" && trap 'rm -rf "$$tmp"' EXIT && \
	$(BIN)/python -m toru.openapi > "$$tmp/openapi.json" && \
	web/node_modules/.bin/openapi-typescript "$$tmp/openapi.json" --empty-objects-unknown \
		> "$$tmp/openapi.d.ts" && \
	{ echo '// Generated from the OpenAPI document (python -m toru.openapi) by `make api-types`.'; \
	  echo '// Do not edit: change toru/openapi.py or toru/plugins/status.py and run it again.'; \
	  cat "$$tmp/openapi.d.ts"; } > $(1)

api-types: $(STAMP) web/node_modules/.installed
	@$(call write_api_types,$(API_TYPES))
	@echo "wrote $(API_TYPES)"

check-api-types: $(STAMP) web/node_modules/.installed
	@$(call write_api_types,"$$tmp/current.d.ts") && \
	if ! diff -u $(API_TYPES) "$$tmp/current.d.ts" >&2; then \
		echo "make: $(API_TYPES) is not what the OpenAPI document gives now; run make api-types" >&2; \
		echo "      and commit the result." >&2; \
		exit 1; \
	fi

# The example plugins, built into ./plugins and enabled on first use (an existing
# plugins/.metadata/config.json, i.e. your own choices, is left alone).
plugins/hello-plugin-python.binary: $(STAMP) $(wildcard examples/hello-plugin-python/*) $(wildcard toru/sdk/*.py)
	$(BIN)/toru plugin build examples/hello-plugin-python -o plugins

examples: plugins/hello-plugin-python.binary
	@if command -v cargo >/dev/null; then \
		examples/hello-plugin-rust/build.sh plugins || echo "could not build the Rust example; skipping it"; \
	else echo "cargo not found: skipping the Rust example"; fi
	@test -f plugins/.metadata/config.json || { mkdir -p plugins/.metadata && \
		printf '{"plugins": {"hello-plugin-python": true, "hello-plugin-rust": true}}\n' \
		> plugins/.metadata/config.json; }

# Serves on 127.0.0.1:3000 (STEERING_PORT/STEERING_HOST change that). Without ADMIN_PASSWORD
# in the environment, a fresh one is generated for this run and printed.
run: $(STAMP) web examples
	@if [ -z "$$ADMIN_PASSWORD" ]; then \
		ADMIN_PASSWORD="$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))')"; \
		export ADMIN_PASSWORD; \
		echo "ADMIN_PASSWORD is not set; generated one for this run:"; \
		echo "    username: $${ADMIN_USERNAME:-admin}    password: $$ADMIN_PASSWORD"; \
	fi; \
	exec $(BIN)/toru serve

# pytest (including the browser tests in tests/e2e, which need chromium), then the UI's vitest.
test: $(STAMP) web
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(NPM) --prefix web test

lint: $(STAMP)
	$(BIN)/ruff check toru tests
	$(BIN)/ruff format --check toru tests
	$(BIN)/mypy
	$(MAKE) --no-print-directory check-api-types

format: $(STAMP)
	$(BIN)/ruff format toru tests
	$(BIN)/ruff check --fix toru tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules toru/web_dist test-artifacts
