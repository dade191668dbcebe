"""TensorRT 10's Python API over edgert (``import edgert as trt`` in place of ``import tensorrt as trt``).

A facade, not a second system: the network is a view over edgert's IR graph, the builder is edgert's
builder, the runtime is edgert's runtime. What differs from TensorRT is written down in
docs/coming-from-tensorrt.md.
"""

from edgert.api.builder import Builder, IHostMemory, init_libnvinfer_plugins
from edgert.api.config import (IBuilderConfig, IInt8Calibrator, IInt8EntropyCalibrator, IInt8EntropyCalibrator2,
                               IInt8LegacyCalibrator, IInt8MinMaxCalibrator, IOptimizationProfile, IProgressMonitor,
                               ITimingCache)
from edgert.api.definition import INetworkDefinition
from edgert.api.enums import (ActivationType, BuilderFlag, CumulativeOperation, DataType, DeviceType, Dims, Dims2,
                              Dims3, Dims4, DimsHW, Weights,
                              ElementWiseOperation, GatherMode, InterpolationMode, LayerInformationFormat,
                              MatrixOperation, MemoryPoolType, NetworkDefinitionCreationFlag, PaddingMode,
                              PaddingType, PoolingType, ProfilingVerbosity, ReduceOperation,
                              ResizeCoordinateTransformation, ResizeMode, ResizeRoundMode, RNNOperation, SampleMode,
                              ScaleMode, ScatterMode, TensorFormat, TensorIOMode, TensorLocation, TopKOperation, UnaryOperation,
                              bool_, float16, float32, int8, int32, int64, nptype, uint8, volume)
from edgert.api.layers import LayerType
from edgert.api.logger import ILogger, Logger
from edgert.api.network import IConstantLayer, ILayer, ITensor
from edgert.api.parser import OnnxParser, ParserError
from edgert.api.runtime import ICudaEngine, IEngineInspector, IExecutionContext, IProfiler, Runtime

BuilderConfig = IBuilderConfig   # DESIGN.md's name for the same object

__all__ = [
    "ActivationType", "Builder", "BuilderConfig", "BuilderFlag", "CumulativeOperation", "DataType", "DeviceType",
    "Dims", "Dims2", "Dims3", "Dims4", "DimsHW", "ElementWiseOperation", "GatherMode", "IBuilderConfig",
    "IConstantLayer", "ICudaEngine", "IEngineInspector", "IExecutionContext", "IHostMemory", "IInt8Calibrator",
    "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2", "IInt8LegacyCalibrator", "IInt8MinMaxCalibrator", "ILayer",
    "ILogger", "INetworkDefinition", "IOptimizationProfile", "IProfiler", "IProgressMonitor", "ITensor",
    "ITimingCache", "InterpolationMode", "LayerInformationFormat", "LayerType", "Logger", "MatrixOperation",
    "MemoryPoolType", "NetworkDefinitionCreationFlag", "OnnxParser", "PaddingMode", "PaddingType", "ParserError",
    "PoolingType", "ProfilingVerbosity", "RNNOperation", "ReduceOperation", "ResizeCoordinateTransformation",
    "ResizeMode", "ResizeRoundMode", "Runtime", "SampleMode", "ScaleMode", "ScatterMode", "TensorFormat",
    "TensorIOMode",
    "TensorLocation", "TopKOperation", "UnaryOperation", "Weights", "bool_", "float16", "float32",
    "init_libnvinfer_plugins", "int32", "int64", "int8", "nptype", "uint8", "volume",
]
