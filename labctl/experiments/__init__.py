"""Experiments: a parameter matrix, the steps of one trial, and what is measured."""
