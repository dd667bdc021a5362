# One command per need; each target installs what it needs first.
#   make install   .venv with labreport (editable) and the test tools
#   make test      the test suite (CPU, no internet, a few minutes)
#   make demo      quick CPU preview of the whole pipeline on the development copy of CIFAR-10
#   make report    the full lab: every run of experiments.toml, then the report
#   make messages  refresh the message catalogues after a template's text changed
#   make wheel     dist/labreport-<version>-py3-none-any.whl: to upload to Colab or install elsewhere
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LABREPORT := $(VENV)/bin/labreport
SHARED_DATA ?= ../shared/data/build_cifar10.py

.PHONY: install test test-fast demo report data bench messages wheel clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,slurm]"  # slurm: submitit, for tests/cluster/test_slurm.py
	touch $@

# -n 2: two pytest workers; a third of the suite waits on the labreport processes it starts
test: install
	$(PY) -m pytest -q -n 2

test-fast: install
	$(PY) -m pytest -q -n 2 -m "not slow"

# CIFAR-10 for the demo: built from the development archive beside the checkout when it is
# there, otherwise `labreport run` finds or downloads it under ./data.
data: install
	@if [ ! -d data/cifar-10-batches-py ] && [ -f $(SHARED_DATA) ]; then \
		$(PY) $(SHARED_DATA) data; fi

demo: data
	$(LABREPORT) --runs demo/runs run --profile quick
	@if $(LABREPORT) --help | grep -q ' build '; then \
		$(LABREPORT) --runs demo/runs build --profile quick --out demo/report.pdf --out demo/report.docx; fi

report: data
	$(LABREPORT) run
	@if $(LABREPORT) --help | grep -q ' build '; then $(LABREPORT) build --out report.pdf --out report.docx; fi

# Every word of the report is in the templates (English) and in labreport/report/locale/<lang>/LC_MESSAGES/
# labreport.po: extract them again and merge them into each catalogue; new messages then need a
# translation (tests/report/test_i18n.py fails until every Russian one has it).
messages: install
	$(VENV)/bin/pybabel -q extract -F babel.cfg -k _ -k n_:1,2 -k N_ --no-location --sort-output \
		--project labreport --copyright-holder labreport -o labreport/report/locale/labreport.pot .
	$(VENV)/bin/pybabel -q update -i labreport/report/locale/labreport.pot -d labreport/report/locale -D labreport \
		--no-fuzzy-matching --ignore-obsolete

wheel: install
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .
	@ls dist/labreport-*.whl

bench: data
	$(PY) bench/bench_train.py

clean:
	rm -rf $(VENV) demo dist .pytest_cache
