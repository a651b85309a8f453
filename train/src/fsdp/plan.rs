//! Where each parameter's elements live at a world size: every parameter is flattened
//! and split along dim 0 into `world` shards of ceil(numel / world) elements, the last
//! ones padded with zeros. A rank keeps its shards of all parameters end to end in one
//! flat buffer, so one collective moves the whole model.

use anyhow::{bail, Result};
use gidd_engine::collective::data::{concat, slice};
use gidd_engine::collective::shard_len;
use gidd_engine::{DType, Data, HostTensor};

#[derive(Clone, Debug, PartialEq)]
pub struct ShardPlan {
    pub world: usize,
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    /// shard length of each parameter (the same on every rank)
    pub lens: Vec<usize>,
    /// where each parameter's shard starts in a rank's flat buffer
    pub offsets: Vec<usize>,
    /// length of a rank's flat buffer: the sum of `lens`
    pub total: usize,
}

impl ShardPlan {
    pub fn new(params: &[(String, Vec<usize>)], world: usize) -> Result<ShardPlan> {
        if world == 0 {
            bail!("a world of 0 ranks holds no shards");
        }
        let lens: Vec<usize> = params
            .iter()
            .map(|(_, s)| shard_len(s.iter().product(), world))
            .collect();
        let offsets = lens
            .iter()
            .scan(0, |o, &l| {
                let at = *o;
                *o += l;
                Some(at)
            })
            .collect();
        Ok(ShardPlan {
            world,
            names: params.iter().map(|(n, _)| n.clone()).collect(),
            shapes: params.iter().map(|(_, s)| s.clone()).collect(),
            total: lens.iter().sum(),
            lens,
            offsets,
        })
    }

    pub fn numel(&self, i: usize) -> usize {
        self.shapes[i].iter().product()
    }

    /// Rank `rank`'s shard of every tensor of `full` (in plan order), each flat [lens[i]].
    pub fn shard(&self, full: &[HostTensor], rank: usize) -> Result<Vec<HostTensor>> {
        self.check_full(full)?;
        full.iter()
            .enumerate()
            .map(|(i, t)| {
                let (n, l) = (self.numel(i), self.lens[i]);
                let start = (rank * l).min(n);
                let real = (n - start).min(l);
                let body = slice(&t.data, start, real);
                let pad = Data::zeros(t.dtype(), l - real);
                Ok(HostTensor::new(vec![l], concat(&[&body, &pad], "shard")?)?)
            })
            .collect()
    }

    /// A rank's shards end to end: its flat buffer of `total` elements.
    pub fn flatten(&self, shards: &[HostTensor]) -> Result<Data> {
        if shards.len() != self.lens.len() {
            bail!("{} shards for a plan of {}", shards.len(), self.lens.len());
        }
        let parts: Vec<&Data> = shards.iter().map(|t| &t.data).collect();
        Ok(concat(&parts, "flatten")?)
    }

    /// A flat buffer of `total` elements cut back into per-parameter shards.
    pub fn split(&self, flat: &Data) -> Result<Vec<HostTensor>> {
        if flat.len() != self.total {
            bail!(
                "a flat shard buffer of {} elements, expected {}",
                flat.len(),
                self.total
            );
        }
        (0..self.lens.len())
            .map(|i| {
                let d = slice(flat, self.offsets[i], self.lens[i]);
                Ok(HostTensor::new(vec![self.lens[i]], d)?)
            })
            .collect()
    }

    /// Full tensors, laid out rank by rank as a reduce_scatter with counts [total; world]
    /// wants them: rank q's segment is `flatten(shard(full, q))`.
    pub fn rank_major(&self, full: &[HostTensor]) -> Result<Data> {
        let per: Vec<Data> = (0..self.world)
            .map(|q| self.flatten(&self.shard(full, q)?))
            .collect::<Result<_>>()?;
        let parts: Vec<&Data> = per.iter().collect();
        Ok(concat(&parts, "rank_major")?)
    }

    /// The full tensors from every rank's flat buffer end to end (an all_gather's result,
    /// or the shard files of a checkpoint concatenated), padding dropped.
    pub fn unshard(&self, gathered: &Data) -> Result<Vec<HostTensor>> {
        if gathered.len() != self.world * self.total {
            bail!(
                "{} gathered elements, expected {} ranks x {}",
                gathered.len(),
                self.world,
                self.total
            );
        }
        (0..self.lens.len())
            .map(|i| {
                let parts: Vec<Data> = (0..self.world)
                    .map(|q| slice(gathered, q * self.total + self.offsets[i], self.lens[i]))
                    .collect();
                let refs: Vec<&Data> = parts.iter().collect();
                let all = concat(&refs, "unshard")?;
                let body = slice(&all, 0, self.numel(i));
                Ok(HostTensor::new(self.shapes[i].clone(), body)?)
            })
            .collect()
    }

    /// Zero shards of `dtype` (the gradient sums' start, fresh optimizer state).
    pub fn zeros(&self, dtype: DType) -> Vec<HostTensor> {
        self.lens
            .iter()
            .map(|&l| HostTensor::zeros(dtype, vec![l]))
            .collect()
    }

    fn check_full(&self, full: &[HostTensor]) -> Result<()> {
        if full.len() != self.shapes.len() {
            bail!("{} tensors for a plan of {}", full.len(), self.shapes.len());
        }
        for (i, t) in full.iter().enumerate() {
            if t.shape != self.shapes[i] {
                bail!(
                    "{}: shape {:?}, the plan has {:?}",
                    self.names[i],
                    t.shape,
                    self.shapes[i]
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_gather_roundtrip_with_padding_and_all_padding_shards() {
        // 5 elements over 4 ranks: shards of 2, rank 2 holds 1 real element, rank 3 none
        let params = vec![("a".to_string(), vec![5]), ("b".to_string(), vec![2, 3])];
        let plan = ShardPlan::new(&params, 4).expect("plan");
        assert_eq!(plan.lens, vec![2, 2]);
        let full = vec![
            HostTensor::f32(vec![5], vec![1., 2., 3., 4., 5.]).expect("a"),
            HostTensor::f32(vec![2, 3], vec![6., 7., 8., 9., 10., 11.]).expect("b"),
        ];
        let flats: Vec<Data> = (0..4)
            .map(|q| {
                plan.flatten(&plan.shard(&full, q).expect("shard"))
                    .expect("flat")
            })
            .collect();
        assert_eq!(flats[3], Data::F32(vec![0., 0., 0., 0.]));
        assert_eq!(flats[2], Data::F32(vec![5., 0., 10., 11.]));
        let refs: Vec<&Data> = flats.iter().collect();
        let gathered = concat(&refs, "test").expect("concat");
        assert_eq!(gathered, plan.rank_major(&full).expect("rank major"));
        assert_eq!(plan.unshard(&gathered).expect("unshard"), full);
        assert_eq!(
            plan.split(&flats[1]).expect("split")[1].data,
            Data::F32(vec![8., 9.])
        );
    }
}
