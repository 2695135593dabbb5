"""Drop-in facades for the reference queue libraries, on leaseq."""
