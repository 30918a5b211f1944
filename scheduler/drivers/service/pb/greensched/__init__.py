"""Generated gRPC stubs of the load-cap service (`make proto`); do not edit."""
