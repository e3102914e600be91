//! Attaching to interfaces: placeholder replaced below.
