package bank.hello;

import org.apache.commons.lang3.StringUtils;

public final class Greeting {
    private Greeting() {
    }

    public static String of(String name) {
        return "Hello, " + StringUtils.capitalize(StringUtils.defaultIfBlank(name, "world")) + "!";
    }

    public static void main(String[] args) {
        System.out.println(of(args.length > 0 ? args[0] : ""));
    }
}
