"""Event sources: each kind of trigger in a module of its own behind one interface, and the
supervisor that runs the sources of every enabled trigger."""
