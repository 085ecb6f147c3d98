//! `basalt hold`: a board held for a reservation (docs/reservations.md).

pub mod ssh;
