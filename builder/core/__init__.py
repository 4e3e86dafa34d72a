"""The vocabulary every stage shares: errors with source positions, the types that cross stages,
the option tables, and atomic writes. Imports no other stage."""
