#!/usr/bin/env bash
# Checks formatting against .swift-format (4 spaces, 120 columns, ordered imports).
set -euo pipefail
cd "$(dirname "$0")/.."
swift format lint --strict -r Sources Tests Benchmarks/LeaseholdBench Package.swift
