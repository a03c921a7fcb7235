"""Test helpers that build real stand-ins on disk: powercap sysfs trees and an NVML library."""
