// Package examples builds and runs the programs in examples/ against a real
// herald, so that the code the migration guide (docs/migrating.md) shows keeps
// working: the Java publisher and outbox writer (examples/java) against
// MariaDB, the room-state service (examples/rooms) and the React app
// (examples/react).
//
// The tests run with HERALD_TEST_EXAMPLES=1, which .ci/run sets after
// installing what they need (a JDK, Debian's libmariadb-java, Node.js); the
// Java test also needs HERALD_TEST_MYSQL_DSN, a MariaDB or MySQL in the
// go-sql-driver form (root@tcp(127.0.0.1:3306)/test), in which it creates a
// database of its own and drops it. Without HERALD_TEST_EXAMPLES=1 they skip,
// saying why; under CI=true a missing piece is a failure, not a skip.
package examples
