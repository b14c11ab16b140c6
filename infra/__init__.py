"""The shared core every other package builds on: the queues.yaml model, settings, errors,
AWS clients, the wire envelope and failure record, the stores, provisioning, export, the emulator.
"""
