package main

// The engines this binary has: each registers its URL scheme with the engine
// package when imported (see engine.Open).
import (
	_ "github.com/herald-hub/herald/engine/kafka"
	_ "github.com/herald-hub/herald/engine/local"
	_ "github.com/herald-hub/herald/engine/memory"
	_ "github.com/herald-hub/herald/engine/nats"
	_ "github.com/herald-hub/herald/engine/redis"
)
