//! The protocols a job talks to services with besides its console (LAVA's
//! `lava_dispatcher/protocols`): `lava-multinode`, the coordinator of a MultiNode group.

pub mod multinode;
