//! The graph: nodes (op, inputs, outputs) appended in topological order, and
//! `Tensor`, a handle to one value. Methods validate and record; nothing runs
//! until a `Program` is compiled and executed.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::host::HostTensor;
use crate::infer::infer;
use crate::op::{Op, TensorType};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

pub type ValueId = usize;

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

#[derive(Clone, Debug)]
pub struct Value {
    pub node: usize,
    pub index: usize,
    pub ty: TensorType,
}

#[derive(Clone, Debug, Default)]
pub struct GraphData {
    pub nodes: Vec<Node>,
    pub values: Vec<Value>,
}

impl GraphData {
    fn push(&mut self, op: Op, inputs: Vec<ValueId>, types: Vec<TensorType>) -> Vec<ValueId> {
        let node = self.nodes.len();
        let outputs: Vec<ValueId> = types
            .into_iter()
            .enumerate()
            .map(|(index, ty)| {
                self.values.push(Value { node, index, ty });
                self.values.len() - 1
            })
            .collect();
        self.nodes.push(Node {
            op,
            inputs,
            outputs: outputs.clone(),
        });
        outputs
    }
}

/// A graph under construction. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Graph(Rc<RefCell<GraphData>>);

/// A handle to one value of a graph.
#[derive(Clone, Debug)]
pub struct Tensor {
    graph: Graph,
    id: ValueId,
    ty: TensorType,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn same(&self, other: &Graph) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// A snapshot of the nodes and values recorded so far.
    pub fn data(&self) -> std::cell::Ref<'_, GraphData> {
        self.0.borrow()
    }

    pub fn tensor(&self, id: ValueId) -> Tensor {
        let ty = self.0.borrow().values[id].ty.clone();
        Tensor {
            graph: self.clone(),
            id,
            ty,
        }
    }

    fn leaf(&self, op: Op, ty: TensorType) -> Tensor {
        let id = self.0.borrow_mut().push(op, vec![], vec![ty])[0];
        self.tensor(id)
    }

    /// A value supplied when the program runs.
    pub fn input(&self, name: &str, shape: &[usize], dtype: DType) -> Tensor {
        self.leaf(
            Op::Input {
                name: name.to_string(),
            },
            TensorType::new(shape.to_vec(), dtype),
        )
    }

    pub fn constant(&self, t: HostTensor) -> Tensor {
        let ty = TensorType::new(t.shape.clone(), t.dtype());
        self.leaf(Op::Constant(Arc::new(t)), ty)
    }

    /// `x` everywhere in a tensor of the given shape and dtype.
    pub fn splat(&self, x: f64, shape: &[usize], dtype: DType) -> Tensor {
        self.leaf(Op::Splat(x), TensorType::new(shape.to_vec(), dtype))
    }

    pub fn scalar(&self, x: f64, dtype: DType) -> Tensor {
        self.splat(x, &[], dtype)
    }

    pub fn zeros(&self, shape: &[usize], dtype: DType) -> Tensor {
        self.splat(0.0, shape, dtype)
    }

    /// Index along `dim`, as a tensor of the given shape.
    pub fn iota(&self, shape: &[usize], dim: usize, dtype: DType) -> Result<Tensor> {
        if dim >= shape.len() {
            return Err(Error::shape(
                "iota",
                format!("dim {dim} out of range"),
                &[shape],
            ));
        }
        Ok(self.leaf(Op::Iota { dim }, TensorType::new(shape.to_vec(), dtype)))
    }

    /// Records `op` on `inputs` after checking them; returns every output.
    pub fn apply(&self, op: Op, inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
        if let Some(t) = inputs.iter().find(|t| !t.graph.same(self)) {
            let _ = t;
            return Err(Error::GraphMismatch { op: op.name() });
        }
        let tys: Vec<&TensorType> = inputs.iter().map(|t| &t.ty).collect();
        let outs = infer(&op, &tys)?;
        let ids = self
            .0
            .borrow_mut()
            .push(op, inputs.iter().map(|t| t.id).collect(), outs);
        Ok(ids.into_iter().map(|id| self.tensor(id)).collect())
    }

    /// Like `apply` for single-output ops.
    pub fn apply1(&self, op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
        let mut v = self.apply(op, inputs)?;
        Ok(v.swap_remove(0))
    }
}

impl Tensor {
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    pub fn id(&self) -> ValueId {
        self.id
    }
    pub fn ty(&self) -> &TensorType {
        &self.ty
    }
    pub fn shape(&self) -> &[usize] {
        &self.ty.shape
    }
    pub fn dtype(&self) -> DType {
        self.ty.dtype
    }
    pub fn rank(&self) -> usize {
        self.ty.shape.len()
    }
    pub fn numel(&self) -> usize {
        self.ty.numel()
    }
    /// Size of dim `d`; negative counts from the end.
    pub fn dim(&self, d: isize) -> usize {
        let r = self.rank() as isize;
        self.ty.shape[if d < 0 { (r + d) as usize } else { d as usize }]
    }
    /// The node that produced this value.
    pub fn producer(&self) -> Node {
        let g = self.graph.0.borrow();
        g.nodes[g.values[self.id].node].clone()
    }
    /// Output `i` of the node that produced this value.
    pub fn sibling(&self, i: usize) -> Tensor {
        let id = self.producer().outputs[i];
        self.graph.tensor(id)
    }
}
