"""EnOS state and rules, no HTTP: the device registry, the CA, certificates, gateway tokens."""
