"""The Wan2.2 I2V backend (diffusers). Import ``worker.wan.backend`` for the backend itself; this
package's top level stays free of torch so options can be built and checked cheaply."""

from worker.wan.options import LoraSpec, WanOptions, wan_options_from_config

__all__ = ["LoraSpec", "WanOptions", "wan_options_from_config"]
