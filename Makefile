# The README's two commands. Each bootstraps what it needs first (fast when already done).
.PHONY: demo test bootstrap

bootstrap:
	scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/fabstir-node demo

test: bootstrap
	.venv/bin/python -m pytest
