"""Channel adapters: each turns its platform's events into `Inbound`/`StaffInbound` for the
core and owns the one function that sends. They import from the core only `bot.core.types`."""
