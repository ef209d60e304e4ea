//! The SQLite event store: schema, migrations, insert rules, queries. (Being built: issue 4.)
