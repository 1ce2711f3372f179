"""Huawei Cloud IoTDA emulator: server certificates and device CA certificates (v5 API)."""
