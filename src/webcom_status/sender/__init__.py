"""The provider's side: an outbox of states to push, a dispatcher, an emulator."""
