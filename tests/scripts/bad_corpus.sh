#!/bin/sh
# The bad-program corpus (tests/bad): every case fails with its expected diagnostics.
exec sh "$(dirname "$0")/../bad/run.sh" "${GRADC:-build/gradc}"
