"""Provisioned capacity: schedules, target tracking and idle mode over the pools."""
