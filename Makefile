# Brecha: two commands on a fresh machine.
#   make run   -> creates .venv, installs, runs the whole pipeline on the embedded synthetic default
#   make test  -> creates .venv if needed, installs, runs every test (pytest, ruff, sqlfluff)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled
export BRECHA_HOME ?= $(CURDIR)/warehouse
export DO_NOT_TRACK := 1

.PHONY: install manifest extensions run test pytest-lake-airflow pytest-others lint node chromium plugin-duckdb bench \
	bench-api corpus serve airflow docs clean \
	lake-up lake-down

install: $(STAMP) manifest extensions $(COMPILED)

# pip does not byte-compile what it installs (--no-compile: it would compile the 17,000 files one after the other,
# ~35 s of a CPU); $(COMPILED) compiles them on every core, beside the manifest and the extensions
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --no-compile -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# as pip does, a file that does not compile (Python 2 or 3.12 code some packages ship, never imported here) is passed
# over: bytecode only saves time, Python compiles whatever it imports anyway
$(COMPILED): $(STAMP)
	$(BIN)/python -m compileall -qq -j0 $(VENV)/lib || true
	touch $(COMPILED)

# the parsed dbt project (dbt_project/target/manifest.json) the Airflow DAG loads; re-parsed when the project changed
manifest: $(STAMP)
	$(BIN)/python -c 'from brecha.warehouse.dbt import parse_project; parse_project()'

# DuckDB's extensions (excel, ducklake, postgres) from their wheels into the venv's duckdb_extensions folder, where
# every process of the project finds them: none is downloaded at run time (brecha.core.db.install_extensions)
extensions: $(STAMP)
	$(BIN)/python -c 'from brecha.core.db import install_extensions; install_extensions()'

run: install
	$(BIN)/brecha run

# pip (install), npm (node), the plugin's DuckDB and apt (chromium) at the same time: they wait on the network and
# the disk, not on each other. Then ruff and sqlfluff beside the tests, and the tests as two pytest sessions side by
# side, one per core (one session kept a single core busy once its background runs were done: 130% CPU): the lake's
# and Airflow's tests (LAKE_AIRFLOW_TESTS: the lake's PostgreSQL and run, the DAG runs) in one, every other test file in
# the other (the real extracts' run). Each session starts the long runs its own tests need (tests/conftest.py
# _started_early) and builds its own synthetic warehouse (pipeline_run, ~45 s of a CPU); split so that both end
# about together.
LAKE_AIRFLOW_TESTS := $(addprefix tests/,test_dag.py test_lake.py test_lake_serve.py test_grafana_lake.py \
	test_airflow_local.py)

test:
	$(MAKE) --no-print-directory -j4 --output-sync=target install node plugin-duckdb chromium
	$(MAKE) --no-print-directory -j3 --output-sync=target lint pytest-lake-airflow pytest-others

pytest-lake-airflow: install
	$(BIN)/pytest -q $(LAKE_AIRFLOW_TESTS)

pytest-others: install
	$(BIN)/pytest -q $(addprefix --ignore=,$(LAKE_AIRFLOW_TESTS))

# node packages of the Grafana harness (tests/test_grafana.py expands dashboards with Grafana's own code)
HARNESS := grafana/harness
node: $(HARNESS)/node_modules/.package-lock.json

$(HARNESS)/node_modules/.package-lock.json: $(HARNESS)/package.json $(HARNESS)/package-lock.json
	cd $(HARNESS) && npm ci --no-audit --no-fund --loglevel=error

# Debian's chromium: tests open pages as a reader does (dbt docs, GX Data Docs, the atlas); installed once (CI runs as root), skipped when present.
chromium:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# the DuckDB that the Grafana plugin embeds, apart from the project's (tests/test_grafana.py PLUGIN_DUCKDB), and the
# lake's extensions for it (ducklake, postgres) installed from their wheels into the folder a Grafana reading the lake
# mounts (extensions/, tests/test_grafana_lake.py; grafana/README.md "Reading the lake")
PLUGIN_DUCKDB := 1.5.4
PLUGIN_SITE := $(VENV)/plugin-duckdb-$(PLUGIN_DUCKDB)
plugin-duckdb: $(PLUGIN_SITE)/duckdb $(PLUGIN_SITE)/extensions/.installed

$(PLUGIN_SITE)/duckdb: $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --target $(PLUGIN_SITE) duckdb==$(PLUGIN_DUCKDB)

$(PLUGIN_SITE)/extensions/.installed: $(PLUGIN_SITE)/duckdb
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --target $(PLUGIN_SITE) \
		duckdb-extension-ducklake==$(PLUGIN_DUCKDB) duckdb-extension-postgres==$(PLUGIN_DUCKDB)
	PYTHONPATH=$(PLUGIN_SITE) $(BIN)/python -c 'import duckdb, glob; con = duckdb.connect(config={"extension_directory": \
		"$(PLUGIN_SITE)/extensions", "autoinstall_known_extensions": False}); [con.execute(f"INSTALL {chr(39)}{f}{chr(39)}") \
		for f in glob.glob("$(PLUGIN_SITE)/duckdb_extension_*/extensions/v$(PLUGIN_DUCKDB)/*.duckdb_extension")]'
	touch $@

lint: install
	$(BIN)/ruff check brecha ml dags tests tools grafana
	@# sqlfluff's dbt templater renders the models with dbt itself, in a scratch home (an empty DuckDB file)
	scratch=$$(mktemp -d) && cd dbt_project && BRECHA_HOME=$$scratch DBT_TARGET_PATH=$$scratch/target \
		DBT_LOG_PATH=$$scratch/logs ../$(BIN)/sqlfluff lint models --processes 2; rc=$$?; rm -rf "$$scratch"; exit $$rc

bench: install
	$(BIN)/python -m tools.bench

# damaged copies of the extracts (../shared/data/real, else synthetic), each through `brecha run --input`
corpus: install
	$(BIN)/python -m tools.corpus

bench-api: install
	$(BIN)/python -m tools.bench_api

serve: install
	$(BIN)/brecha serve $(SERVE_ARGS)

docs: install
	$(BIN)/brecha docs

airflow: install
	$(BIN)/brecha airflow

# The lake (README "Past one machine: the lake"): this home's PostgreSQL catalog for DuckLake, on 127.0.0.1 with a
# generated password, data under $(BRECHA_HOME)/lake; Debian's postgresql is installed when absent (as root). Then
# `. $(BRECHA_HOME)/lake.env` in a shell. Standard library only: it needs no venv.
lake-up:
	$(PYTHON) -m brecha.core.lake up --home "$(BRECHA_HOME)"

lake-down:
	$(PYTHON) -m brecha.core.lake down --home "$(BRECHA_HOME)"

clean:
	rm -rf $(VENV) dbt_project/target dbt_project/logs $(HARNESS)/node_modules
