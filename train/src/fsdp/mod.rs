//! Fully sharded data parallel training over the engine's collectives: the shard layout
//! ([`plan`]), sharded checkpoints that load at any world size ([`checkpoint`]) and the
//! per-rank memory a world size needs ([`memory`]). The rank loop itself is
//! `trainer::fsdp_loop`.

pub mod checkpoint;
pub mod memory;
pub mod plan;

pub use plan::ShardPlan;

#[cfg(test)]
mod tests;
