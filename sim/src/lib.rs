//! Deterministic simulations of blossom (work in progress).
