"""Forwarding to upstream log engines: Fluent Forward and RFC 5424 syslog over TCP.

The writer thread appends matching records to each output's disk buffer (`hub`,
`buffer`); one trio task per output sends them upstream and removes them once
acknowledged (`fluent`, `syslog_output`). Formatting and matching are pure (`syslog`,
`match`).
"""
