//! cordon: the emergency brake for non-human identities.
