//! Exporting a classifier as one ONNX graph (opset 17) that a deployer can run anywhere: its
//! input is the decoded image itself (uint8 RGB, `[batch, size, size, 3]`, the batch
//! dimension dynamic), the preprocessing (channel order, mean, scale) is inside the graph,
//! batch norm is folded into the convolutions, and the output is the class probabilities.
//! Class names, input size and provenance are in the model's metadata.

mod proto;

use std::collections::BTreeMap;

use anyhow::Result;
use burn::tensor::Tensor;
use prost::Message;

use crate::inference::Predictor;
use crate::model::Classifier;
use crate::model::resnet::{Bottleneck, ConvBn};
use crate::preprocess::Normalization;
use proto::*;

/// The ONNX operator set the graph uses.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// Names of the graph's input and output.
pub const INPUT: &str = "image";
pub const OUTPUT: &str = "probabilities";

/// The ONNX model of `predictor`, with `provenance` (where it came from) in its metadata.
/// Whether the file at `path` is an ONNX model this program exported (one a new export may
/// replace).
pub fn is_our_export(path: &std::path::Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| ModelProto::decode(bytes.as_slice()).ok())
        .is_some_and(|model| model.producer_name.as_deref() == Some("fruitlab"))
}

pub fn to_onnx(predictor: &Predictor, provenance: BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut graph = Graph::default();
    let size = predictor.input.size as i64;
    let x = graph.preprocess(predictor.input.normalization);
    let features = graph.backbone(&predictor.model, x)?;
    let logits = graph.head(&predictor.model, features)?;
    // Calibrated probabilities: softmax(logits / T), with the run's fitted temperature.
    let temperature = graph.weight("temperature", &[1], &[predictor.temperature() as f32]);
    let scaled = graph.op("Div", &[&logits, &temperature], vec![]);
    graph.node("Softmax", &[&scaled], OUTPUT, vec![int("axis", 1)]);

    let classes = predictor.classes.len() as i64;
    let input_doc = format!(
        "uint8 RGB pixels, [batch, {size}, {size}, 3] (channels last): the image's centred square, resized to {size} x {size}"
    );
    let proto = GraphProto {
        node: graph.nodes,
        name: Some("fruitlab-classifier".into()),
        initializer: graph.initializers,
        input: vec![value_info(INPUT, UINT8, &[None, Some(size), Some(size), Some(3)], &input_doc)],
        output: vec![value_info(OUTPUT, FLOAT, &[None, Some(classes)], "class probabilities")],
    };
    let mut metadata = provenance;
    metadata.insert("classes".into(), serde_json::to_string(&predictor.classes)?);
    metadata.insert("image_size".into(), size.to_string());
    metadata.insert("input_layout".into(), "NHWC uint8 RGB".into());
    metadata.insert("crop".into(), predictor.input.crop.to_string());
    metadata.insert("temperature".into(), predictor.temperature().to_string());
    if let Some(trust) = predictor.trust.as_ref().filter(|_| predictor.reject) {
        // "None of these" needs the image's pooled features for the Mahalanobis score, which
        // this graph does not output: the metadata says how it is decided, for a reader that
        // computes it (the probability and energy scores need only the outputs).
        metadata.insert("reject_score".into(), crate::support::spelling(&trust.record.score));
        metadata
            .insert("reject_thresholds".into(), serde_json::to_string(&trust.record.thresholds)?);
        metadata.insert("reject_rate".into(), trust.record.reject_rate.to_string());
    }
    metadata.insert(
        "normalization".into(),
        serde_json::to_value(predictor.input.normalization)?.as_str().unwrap_or_default().into(),
    );
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("fruitlab".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(format!("ResNet-50 image classifier over {classes} classes")),
        graph: Some(proto),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key: Some(key), value: Some(value) })
            .collect(),
    };
    Ok(model.encode_to_vec())
}

/// The nodes and weights of the graph being built; values are named by the node making them.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
}

impl Graph {
    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(format!("{op}_{}", self.nodes.len())),
            op_type: Some(op.to_string()),
            attribute: attributes,
        });
    }

    /// A node with a fresh output name, which it returns.
    fn op(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> String {
        let output = self.fresh(&op.to_lowercase());
        self.node(op, inputs, &output, attributes);
        output
    }

    fn weight(&mut self, prefix: &str, dims: &[usize], values: &[f32]) -> String {
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.clone()),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name
    }

    fn int64s(&mut self, prefix: &str, values: &[i64]) -> String {
        let name = self.fresh(prefix);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: Some(INT64),
            name: Some(name.clone()),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name
    }

    /// uint8 NHWC RGB in, normalised float NCHW out (the network's channel order).
    fn preprocess(&mut self, normalization: Normalization) -> String {
        let x = self.op("Cast", &[INPUT], vec![int("to", FLOAT as i64)]);
        let x = match normalization {
            Normalization::Caffe => {
                // RGB -> BGR, minus the ImageNet means.
                let bgr = self.int64s("bgr", &[2, 1, 0]);
                let x = self.op("Gather", &[&x, &bgr], vec![int("axis", 3)]);
                let mean_rgb = Normalization::Caffe.channels([0.0; 3]).map(|v| -v);
                let mean = self.weight("mean", &[3], &mean_rgb);
                self.op("Sub", &[&x, &mean], vec![])
            }
            Normalization::Rescale => {
                let scale = self.weight("scale", &[1], &[1.0 / 255.0]);
                self.op("Mul", &[&x, &scale], vec![])
            }
        };
        self.op("Transpose", &[&x], vec![ints("perm", &[0, 3, 1, 2])])
    }

    /// A folded convolution (and its ReLU).
    fn conv(&mut self, unit: &ConvBn, x: &str, relu: bool) -> Result<String> {
        anyhow::ensure!(
            unit.bn.is_none(),
            "export needs the inference network (batch norm folded)"
        );
        let weight = unit.conv.weight.val();
        let dims = weight.dims();
        let w = self.weight("w", &dims, &values(weight)?);
        let bias = match &unit.conv.bias {
            Some(bias) => values(bias.val())?,
            None => vec![0.0; dims[0]],
        };
        let b = self.weight("b", &[dims[0]], &bias);
        let (k, stride) = (dims[2] as i64, unit.conv.stride[0] as i64);
        let pad = k / 2;
        let y = self.op(
            "Conv",
            &[x, &w, &b],
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[stride, stride]),
                ints("pads", &[pad, pad, pad, pad]),
                ints("dilations", &[1, 1]),
                int("group", 1),
            ],
        );
        Ok(if relu { self.op("Relu", &[&y], vec![]) } else { y })
    }

    fn block(&mut self, block: &Bottleneck, x: &str) -> Result<String> {
        let shortcut = match &block.shortcut {
            Some(projection) => self.conv(projection, x, false)?,
            None => x.to_string(),
        };
        let y = self.conv(&block.reduce, x, true)?;
        let y = self.conv(&block.spatial, &y, true)?;
        let y = self.conv(&block.expand, &y, false)?;
        let y = self.op("Add", &[&y, &shortcut], vec![]);
        Ok(self.op("Relu", &[&y], vec![]))
    }

    /// The backbone: pooled features `[batch, 2048]`.
    fn backbone(&mut self, model: &Classifier, x: String) -> Result<String> {
        let backbone = &model.backbone;
        let x = self.conv(&backbone.stem, &x, true)?;
        let mut x = self.op(
            "MaxPool",
            &[&x],
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("strides", &[2, 2]),
                ints("pads", &[1, 1, 1, 1]),
            ],
        );
        for block in backbone.stages.iter().flat_map(|stage| &stage.blocks) {
            x = self.block(block, &x)?;
        }
        let x = self.op("GlobalAveragePool", &[&x], vec![]);
        Ok(self.op("Flatten", &[&x], vec![int("axis", 1)]))
    }

    /// The top: logits.
    fn head(&mut self, model: &Classifier, mut x: String) -> Result<String> {
        let head = &model.head;
        for (layer, relu) in head.hidden.iter().map(|h| (h, true)).chain([(&head.output, false)]) {
            // burn's Linear weight is [inputs, outputs]: Gemm's B as it is.
            let weight = layer.weight.val();
            let dims = weight.dims();
            let w = self.weight("dense_w", &dims, &values(weight)?);
            let bias = match &layer.bias {
                Some(bias) => values(bias.val())?,
                None => vec![0.0; dims[1]],
            };
            let b = self.weight("dense_b", &[dims[1]], &bias);
            x = self.op("Gemm", &[&x, &w, &b], vec![]);
            if relu {
                x = self.op("Relu", &[&x], vec![]);
            }
        }
        Ok(x)
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|error| anyhow::anyhow!("cannot read the weights: {error:?}"))
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(value),
        ints: vec![],
        r#type: Some(ATTRIBUTE_INT),
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: None,
        ints: values.to_vec(),
        r#type: Some(ATTRIBUTE_INTS),
    }
}

/// A graph input or output: element type and shape (`None` = the dynamic batch size).
fn value_info(name: &str, elem_type: i32, dims: &[Option<i64>], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(size) => DimensionValue::Value(*size),
                None => DimensionValue::Param("batch".into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TensorTypeProto {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: Some(doc.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::model::{HeadKind, Layout};
    use crate::preprocess::InputSpec;

    /// A randomly initialised classifier over three classes at 64 px.
    fn predictor() -> Predictor {
        let device = burn::tensor::Device::flex();
        let model = Classifier::new(Layout::Keras, HeadKind::Mlp, 3, &device).inference();
        Predictor {
            model,
            classes: ["apple", "banana", "cherry"].map(String::from).to_vec(),
            input: InputSpec { size: 64, crop: 1.0, normalization: Normalization::Caffe },
            device,
            identity: "sha256:test".into(),
            trust: None,
            reject: true,
            note: None,
        }
    }

    fn dims(value: &ValueInfoProto) -> (i32, Vec<Option<i64>>) {
        let Some(TypeValue::TensorType(tensor)) = value.r#type.as_ref().unwrap().value.as_ref()
        else {
            panic!("{:?} is not a tensor", value.name)
        };
        let dims = tensor.shape.as_ref().unwrap().dim.iter().map(|d| match &d.value {
            Some(DimensionValue::Value(size)) => Some(*size),
            _ => None,
        });
        (tensor.elem_type.unwrap(), dims.collect())
    }

    /// What a runtime reads first: the producer, the opset, the input and output with a dynamic
    /// batch, and the metadata a deployer needs (classes, size, provenance). (The numbers the
    /// graph computes are checked against `fruitlab predict` in ONNX Runtime:
    /// `bench/onnx_runtime_check.py`, run by CI.)
    #[test]
    fn the_model_says_what_it_expects_and_which_classes_it_knows() {
        let provenance = BTreeMap::from([("run".to_string(), "runs/test".to_string())]);
        let bytes = to_onnx(&predictor(), provenance).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.producer_name.as_deref(), Some("fruitlab"));
        assert_eq!(model.opset_import[0].version, Some(OPSET));
        let graph = model.graph.as_ref().unwrap();
        assert_eq!(graph.input[0].name.as_deref(), Some(INPUT));
        assert_eq!(dims(&graph.input[0]), (UINT8, vec![None, Some(64), Some(64), Some(3)]));
        assert_eq!(graph.output[0].name.as_deref(), Some(OUTPUT));
        assert_eq!(dims(&graph.output[0]), (FLOAT, vec![None, Some(3)]));
        let metadata: BTreeMap<_, _> = model
            .metadata_props
            .iter()
            .map(|entry| (entry.key.clone().unwrap(), entry.value.clone().unwrap()))
            .collect();
        assert_eq!(metadata["classes"], r#"["apple","banana","cherry"]"#);
        assert_eq!(metadata["image_size"], "64");
        assert_eq!(metadata["run"], "runs/test");
        assert_eq!(metadata["temperature"], "1");
    }

    /// Every value a node reads is the graph's input, a weight, or an earlier node's output
    /// (ONNX requires the nodes in that order), and the last node writes the output.
    #[test]
    fn every_node_reads_values_defined_before_it() {
        let bytes = to_onnx(&predictor(), BTreeMap::new()).unwrap();
        let graph = ModelProto::decode(bytes.as_slice()).unwrap().graph.unwrap();
        let mut defined: HashSet<String> =
            graph.initializer.iter().map(|t| t.name.clone().unwrap()).collect();
        defined.insert(INPUT.into());
        for node in &graph.node {
            for input in node.input.iter().filter(|name| !name.is_empty()) {
                assert!(defined.contains(input), "{:?} reads {input} before it exists", node.name);
            }
            for output in &node.output {
                assert!(defined.insert(output.clone()), "{output} is written twice");
            }
        }
        assert_eq!(graph.node.last().unwrap().output, [OUTPUT]);
        let convolutions = graph.node.iter().filter(|n| n.op_type.as_deref() == Some("Conv"));
        assert_eq!(convolutions.count(), 53, "ResNet-50 has 53 convolutions");
    }
}
