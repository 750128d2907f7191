package bank.hello;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

class GreetingTest {
    @Test
    void capitalizesTheName() {
        assertEquals("Hello, Alice!", Greeting.of("alice"));
    }

    @Test
    void greetsTheWorldByDefault() {
        assertEquals("Hello, World!", Greeting.of(" "));
    }
}
